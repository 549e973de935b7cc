#!/usr/bin/env python3
"""Builds schemas/meltano.schema.json: Meltano's schema for meltano.yml plus the relaxations real
Meltano accepts and dsm's `annotations.dsm` model.

Usage: python3 schemas/build_schema.py ../shared/meltano-compat/meltano.schema.json
The test `project::schema::tests::checked_in_schema_is_meltanos_plus_dsm` fails when the
checked-in file no longer contains every key of Meltano's schema.
"""
import json
import sys

src, out = sys.argv[1], "schemas/meltano.schema.json"
s = json.load(open(src))
defs = s["$defs"]
s["$id"] = "https://github.com/dsm/dsm/schemas/meltano.schema.json"
s["title"] = "meltano.yml as read by dsm"
s["description"] = (
    "Meltano's schema for meltano.yml, plus the relaxations real Meltano accepts and dsm's "
    "annotations.dsm keys"
)

# Relaxation: intervals Meltano's scheduler accepts beyond the published pattern.
sched = defs["schedules"]["properties"]["interval"]
sched["pattern"] = (
    r"^((@(hourly|daily|weekly|monthly|yearly|annually|midnight|once|manual|none))|"
    r"((((\d+,)+\d+|(\d+|\*)(\/|-)\d+|\d+|\*) ?){5,6}))$"
)
# Relaxation: an environment may carry a state id suffix.
defs["environments"]["properties"]["state_id_suffix"] = {
    "type": "string",
    "description": "Suffix appended to state ids of runs in this environment",
}
# Relaxation: settings may be marked environment-specific.
defs["base_setting"]["properties"]["env_specific"] = {
    "type": "boolean",
    "description": "Whether the setting's value is specific to an environment",
    "default": False,
}

duration = {
    "description": "A duration: seconds as an integer, or a number with a unit (`30s`, `5m`, `2h`)",
    "oneOf": [
        {"type": "integer", "minimum": 0},
        {"type": "string", "pattern": r"^\d+(\.\d+)?(ms|s|m|h|d)?$"},
    ],
}
dsm = {
    "project": {
        "type": "object",
        "additionalProperties": False,
        "description": "dsm's project-level keys",
        "properties": {
            "merged_streams": {
                "type": "array",
                "items": {"$ref": "#/$defs/dsm/merged_stream"},
            },
            "defaults": {"$ref": "#/$defs/dsm/defaults"},
            "stream_maps": {
                "type": "object",
                "additionalProperties": False,
                "description": "How dsm reads stream-map expressions",
                "properties": {
                    "dialect": {
                        "type": "string",
                        "enum": ["sdk", "extended"],
                        "description": "`sdk` (the default): exactly the functions the Singer "
                        "SDK's mapper has; `extended`: also dsm's wider set (`len`, `min`, "
                        "`round`, `str.format` ...), which makes the project dsm-only",
                    },
                },
            },
        },
    },
    "defaults": {
        "type": "object",
        "additionalProperties": False,
        "description": "Project-wide defaults for flows",
        "properties": {
            "default_loader": {"type": "string"},
            "retries": {"type": "integer", "minimum": 0},
            "retry_backoff": duration,
            "timeout": duration,
            "validation": {"$ref": "#/$defs/dsm/validation"},
        },
    },
    "merged_stream": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "sources", "key"],
        "properties": {
            "name": {"type": "string", "description": "Name of the merged stream"},
            "sources": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["extractor", "stream"],
                    "properties": {
                        "extractor": {"type": "string"},
                        "stream": {"type": "string"},
                        "fields": {
                            "type": "object",
                            "description": "Merged field name to source field name",
                            "additionalProperties": {"type": "string"},
                        },
                    },
                },
            },
            "key": {"type": "array", "items": {"type": "string"}},
            "policy": {"$ref": "#/$defs/dsm/merge_policy"},
            "fields": {
                "type": "object",
                "description": "Per-field rules",
                "additionalProperties": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "policy": {"$ref": "#/$defs/dsm/merge_policy"},
                        "priority": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
        },
    },
    "merge_policy": {
        "type": "string",
        "enum": ["latest", "first", "priority", "error"],
    },
    "validation": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "enabled": {"type": "boolean"},
            "on_error": {"type": "string", "enum": ["fail", "warn", "skip"]},
        },
    },
    "plugin": {
        "type": "object",
        "additionalProperties": False,
        "description": "dsm's plugin-level keys",
        "properties": {
            "source": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "type": {
                        "type": "string",
                        "enum": ["file", "database", "api", "warehouse", "webhook", "other"],
                    },
                    "provider": {"type": "string"},
                    "category": {"type": "string"},
                    "labels": {"type": "array", "items": {"type": "string"}},
                },
            },
            "default_loader": {"type": "string"},
            "enabled": {"type": "boolean"},
            "validation": {"$ref": "#/$defs/dsm/validation"},
            "transforms": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["type"],
                    "properties": {
                        "type": {"type": "string"},
                        "streams": {"type": "array", "items": {"type": "string"}},
                        "config": {"type": "object"},
                    },
                },
            },
        },
    },
    "job": {
        "type": "object",
        "additionalProperties": False,
        "description": "dsm's job- and schedule-level keys",
        "properties": {
            "depends_on": {"type": "array", "items": {"type": "string"}},
            "retries": {"type": "integer", "minimum": 0},
            "retry_backoff": duration,
            "timeout": duration,
            "enabled": {"type": "boolean"},
            "timezone": {
                "type": "string",
                "description": "Schedules only: the IANA time zone the interval is read in "
                "(default UTC)",
                "examples": ["Europe/Berlin", "America/New_York"],
            },
        },
    },
}
defs["dsm"] = dsm


def annotations(level):
    return {
        "type": "object",
        "description": "Annotations keyed by tool; `dsm` holds dsm's own keys",
        "properties": {"dsm": {"$ref": f"#/$defs/dsm/{level}"}},
        "additionalProperties": {"type": "object"},
    }


defs["annotations_project"] = annotations("project")
defs["annotations_plugin"] = annotations("plugin")
defs["annotations_job"] = annotations("job")
s["properties"]["annotations"] = {"$ref": "#/$defs/annotations_project"}


def retarget(node, ref):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "annotations" and v == {"$ref": "#/$defs/annotations"}:
                node[k] = {"$ref": ref}
            else:
                retarget(v, ref)
    elif isinstance(node, list):
        for v in node:
            retarget(v, ref)


for key in ["plugin_generic", "extractor_shared", "mapper_specific", "transforms", "mappers",
            "extractors", "loaders"]:
    plugin = defs["plugins"][key]
    props = plugin.get("properties")
    if props and props.get("annotations") == {"$ref": "#/$defs/annotations"}:
        props["annotations"] = {"$ref": "#/$defs/annotations_plugin"}
    for part in plugin.get("allOf", []):
        p = part.get("properties", {})
        if p.get("annotations") == {"$ref": "#/$defs/annotations"}:
            p["annotations"] = {"$ref": "#/$defs/annotations_plugin"}
defs["jobs"]["properties"]["annotations"] = {"$ref": "#/$defs/annotations_job"}
defs["schedules"]["properties"]["annotations"] = {"$ref": "#/$defs/annotations_job"}

with open(out, "w") as f:
    json.dump(s, f, indent=2)
    f.write("\n")
