#!/usr/bin/env python3
"""Regenerates dsm's catalog of known plugins in taps/catalog/<plugin_type>/<name>--<variant>.json.

Each file has the shape of a Meltano plugin lock file. Nothing in it is written by hand:

* dsm's built-in plugins (variant `dsm`): from the built binaries' own `--about --format json`
  (`--builtins DIR`, the folder holding tap-csv, target-sqlite, ...).
* Every other plugin: from a snapshot of Meltano's public plugin index, the `meltano/hub`
  repository (`--hub PATH`, a checkout or a bare git directory). Its plugin definitions live in
  `_data/meltano/<plugin_type>/<name>/<variant>.yml`, the default variant of each name in
  `_data/default_variants.yml`, and the usage figures (projects and executions over the last three
  months, per plugin repository) in `_data/variant_metrics.yml`.

Which plugins (the rule, also written down in taps/catalog/README.md):

* a plugin name's usage is the sum of `all_projects` over its variants' repositories (each
  repository counted once), then `all_execs` the same way; ties go by name;
* extractors: the TOP_EXTRACTORS most used names; loaders, mappers and utilities: every name;
  hidden plugins are left out, as the index's own pages leave them out;
* for each chosen name, its default variant plus every other variant with at least
  MIN_VARIANT_PROJECTS projects of its own.

taps/catalog/index.json lists the chosen entries, most used first, with the default variant marked
and the usage figures, and names the snapshot (commit and date).

Usage: scripts/refresh-catalog.py [--builtins target/debug] [--hub PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

try:
    import yaml
except ImportError:  # pragma: no cover - a message instead of a traceback
    sys.exit("refresh-catalog.py needs PyYAML: `python3 -m pip install pyyaml`")

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "taps" / "catalog"
INDEX = CATALOG / "index.json"

BUILTINS = [
    ("extractors", "tap-csv", "CSV files"),
    ("extractors", "tap-jsonl", "JSON-lines files"),
    ("extractors", "tap-sqlite", "SQLite"),
    ("extractors", "tap-rest", "REST API"),
    ("extractors", "tap-webhook", "Webhooks"),
    ("extractors", "tap-postgres", "PostgreSQL"), ("loaders", "target-postgres", "PostgreSQL"),
    ("loaders", "target-jsonl", "JSON-lines files"),
    ("loaders", "target-csv", "CSV files"),
    ("loaders", "target-sqlite", "SQLite"),
]

TYPES = ["extractors", "loaders", "mappers", "utilities"]
TOP_EXTRACTORS = 100
MIN_VARIANT_PROJECTS = 5
SENSITIVE_WORDS = ("password", "secret", "token", "private_key", "api_key", "access_key", "credentials")

# Keys of a definition in the index that describe the plugin for its web page only (logos, long
# markdown sections); a lock file does not need them.
WEB_ONLY = {"logo_url", "domain_url", "usage", "next_steps", "settings_preamble", "definition",
            "prereq", "ext_repo"}
# Order of the keys in a written entry (the rest follow in the index's order).
KEY_ORDER = ["plugin_type", "name", "namespace", "variant", "label", "description", "pip_url",
             "repo", "docs", "executable", "capabilities", "keywords", "maintenance_status", "quality"]
SETTING_ORDER = ["name", "kind", "label", "description", "sensitive", "value", "options"]


def label_of(name: str) -> str:
    words = name.replace("-", "_").replace(".", "_").split("_")
    special = {"id": "ID", "url": "URL", "api": "API", "ssl": "SSL", "ssh": "SSH", "s3": "S3", "aws": "AWS"}
    return " ".join(special.get(w.lower(), w.capitalize()) for w in words if w)


def kind_of(schema: dict) -> tuple[str, dict]:
    """Meltano setting kind (and extra keys) for a JSON Schema property of a built-in's `--about`."""
    types = schema.get("type", [])
    if isinstance(types, str):
        types = [types]
    types = [t for t in types if t != "null"]
    extra: dict = {}
    if "enum" in schema and types == ["string"]:
        extra["options"] = [{"label": str(v), "value": v} for v in schema["enum"] if v is not None]
        return "options", extra
    if not types and ("anyOf" in schema or "oneOf" in schema):
        return "object", extra
    t = types[0] if len(types) == 1 else ("string" if "string" in types else (types[0] if types else "string"))
    if t == "string":
        if schema.get("format") in ("date-time", "date"):
            return "date_iso8601", extra
        return "string", extra
    return {"integer": "integer", "number": "decimal", "boolean": "boolean",
            "array": "array", "object": "object"}.get(t, "string"), extra


def settings_from_about(about: dict) -> tuple[list, list]:
    schema = about.get("settings") or {}
    props = schema.get("properties") or {}
    settings = []
    for name, p in props.items():
        kind, extra = kind_of(p)
        s = {"name": name, "kind": kind, "label": p.get("title") or label_of(name)}
        if p.get("description"):
            s["description"] = p["description"]
        # The SDK marks secrets with `secret`/`writeOnly`; not every plugin does, so credential
        # names count too (over-marking only hides a value, under-marking leaks it).
        s["sensitive"] = bool(p.get("secret") or p.get("writeOnly")) or any(
            w in name.lower() for w in SENSITIVE_WORDS)
        if "default" in p:
            s["value"] = p["default"]
        s.update(extra)
        settings.append(s)
    required = schema.get("required") or []
    return settings, ([required] if required else [])


def write(e: dict) -> Path:
    path = CATALOG / e["plugin_type"] / f"{e['name']}--{e['variant']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(e, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {path.relative_to(ROOT)} ({len(e.get('settings') or [])} settings)")
    return path


def run_about(executable: str) -> dict:
    out = subprocess.run([executable, "--about", "--format", "json"], capture_output=True, text=True,
                         timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"`{executable} --about --format json` failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


# What `dsm add` puts into meltano.yml besides the variant, for built-ins that need it.
ANNOTATIONS = {
    "tap-webhook": {"dsm": {"source": {"type": "webhook"}}},
}


def refresh_builtins(bin_dir: Path) -> None:
    for plugin_type, name, label in BUILTINS:
        about = run_about(str(bin_dir / name))
        settings, groups = settings_from_about(about)
        extra = {"annotations": ANNOTATIONS[name]} if name in ANNOTATIONS else {}
        write({
            "plugin_type": plugin_type,
            "name": name,
            "namespace": name.replace("-", "_"),
            "variant": "dsm",
            "label": label,
            "description": about.get("description", ""),
            "executable": name,
            "capabilities": about.get("capabilities", []),
            "settings_group_validation": groups,
            "settings": settings,
            "settings_source": f"`{name} --about --format json` (dsm built-in)",
            **extra,
        })


# --- Meltano's plugin index ---


class Snapshot:
    """The `_data` folder of a `meltano/hub` checkout or bare git directory, with its commit."""

    def __init__(self, path: Path, work: Path):
        path = path.resolve()
        git_dir = None
        if (path / "_data").is_dir():
            self.data = path / "_data"
            if (path / ".git").exists():
                git_dir = path / ".git"
        else:
            # A bare git directory (no work tree): unpack `_data` of HEAD.
            git_dir = path
            archive = work / "data.tar"
            with archive.open("wb") as f:
                subprocess.run(["git", "--git-dir", str(path), "archive", "HEAD", "_data"], stdout=f,
                               check=True)
            with tarfile.open(archive) as t:
                t.extractall(work, filter="data")
            self.data = work / "_data"
        self.commit = self.date = None
        if git_dir is not None:
            out = subprocess.run(["git", "--git-dir", str(git_dir), "log", "-1", "--format=%H %cI"],
                                 capture_output=True, text=True, check=True).stdout.split()
            self.commit, self.date = out[0], out[1]

    def load(self, rel: str):
        with (self.data / rel).open() as f:
            return yaml.safe_load(f)

    def definitions(self, plugin_type: str, name: str) -> dict[str, dict]:
        folder = self.data / "meltano" / plugin_type / name
        return {p.stem: self.load(str(p.relative_to(self.data))) for p in sorted(folder.glob("*.yml"))}


def normalized_setting(s: dict) -> dict:
    """A setting as the index has it, with Meltano's defaults spelt out: `kind` string, and
    `sensitive` true for passwords and OAuth tokens (as Meltano and dsm treat them) else false."""
    out = dict(s)
    out.setdefault("kind", "string")
    out.setdefault("label", label_of(out["name"]))
    out["sensitive"] = bool(s.get("sensitive")) or out["kind"] in ("password", "oauth")
    if isinstance(out.get("description"), str):
        out["description"] = " ".join(out["description"].split())
    ordered = {k: out[k] for k in SETTING_ORDER if k in out}
    ordered.update({k: v for k, v in out.items() if k not in ordered})
    return ordered


def hub_entry(plugin_type: str, variant: str, d: dict, rel: str) -> dict:
    e = {"plugin_type": plugin_type}
    for k, v in d.items():
        if k in WEB_ONLY or v is None:
            continue
        e[k] = v
    e["variant"] = variant
    e.setdefault("namespace", d["name"].replace("-", "_"))
    e.setdefault("label", d["name"])
    e.setdefault("description", e["label"])
    if isinstance(e.get("description"), str):
        e["description"] = " ".join(e["description"].split())
    e.setdefault("executable", d["name"])
    e.setdefault("capabilities", [])
    e.setdefault("settings_group_validation", [])
    e["settings"] = [normalized_setting(s) for s in d.get("settings") or []]
    e["settings_source"] = f"meltano/hub {rel}"
    ordered = {k: e[k] for k in KEY_ORDER if k in e}
    rest = {k: v for k, v in e.items() if k not in ordered and k not in ("settings_group_validation",
                                                                         "settings", "settings_source")}
    ordered.update(rest)
    for k in ("settings_group_validation", "settings", "settings_source"):
        ordered[k] = e[k]
    return ordered


def usage(metrics: dict, definitions: dict[str, dict]) -> tuple[int, int]:
    """Projects and executions of a plugin name: summed over its variants' repositories."""
    repos = {d.get("repo") for d in definitions.values() if d.get("repo")}
    projects = sum(metrics.get(r, {}).get("all_projects", 0) or 0 for r in repos)
    execs = sum(metrics.get(r, {}).get("all_execs", 0) or 0 for r in repos)
    return projects, execs


def refresh_hub(path: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="dsm-catalog-") as tmp:
        snap = Snapshot(path, Path(tmp))
        defaults = snap.load("default_variants.yml")
        metrics = snap.load("variant_metrics.yml")["metrics"]
        index = []
        written: set[Path] = set()
        for plugin_type in TYPES:
            ranked = []
            for folder in sorted((snap.data / "meltano" / plugin_type).iterdir()):
                name = folder.name
                default = defaults.get(plugin_type, {}).get(name)
                definitions = snap.definitions(plugin_type, name)
                if default not in definitions or definitions[default].get("hidden"):
                    continue
                projects, execs = usage(metrics, definitions)
                ranked.append((-projects, -execs, name, default, definitions))
            ranked.sort(key=lambda r: (r[0], r[1], r[2]))
            if plugin_type == "extractors":
                ranked = ranked[:TOP_EXTRACTORS]
            for rank, (neg_projects, neg_execs, name, default, definitions) in enumerate(ranked, 1):
                for variant, d in definitions.items():
                    own = metrics.get(d.get("repo"), {})
                    if variant != default and (d.get("hidden") or
                                               (own.get("all_projects") or 0) < MIN_VARIANT_PROJECTS):
                        continue
                    rel = f"_data/meltano/{plugin_type}/{name}/{variant}.yml"
                    written.add(write(hub_entry(plugin_type, variant, d, rel)))
                    index.append({
                        "plugin_type": plugin_type,
                        "name": name,
                        "variant": variant,
                        "default": variant == default,
                        "rank": rank,
                        "projects": own.get("all_projects") or 0,
                        "execs": own.get("all_execs") or 0,
                    })
        # Entries of an earlier refresh that the index no longer lists (built-ins stay).
        for old in CATALOG.glob("*/*.json"):
            if old not in written and not old.stem.endswith("--dsm"):
                old.unlink()
                print(f"removed {old.relative_to(ROOT)}")
        INDEX.write_text(json.dumps({
            "source": {
                "repository": "meltano/hub",
                "commit": snap.commit,
                "date": snap.date,
                "license": "Apache-2.0",
                "rule": f"extractors: the {TOP_EXTRACTORS} most used names; loaders, mappers, utilities: all; "
                        f"default variant plus variants with {MIN_VARIANT_PROJECTS}+ projects; "
                        "usage = all_projects (then all_execs) over the last three months",
            },
            "plugins": index,
        }, indent=1) + "\n")
        print(f"wrote {INDEX.relative_to(ROOT)} ({len(index)} entries)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--builtins", type=Path, help="folder with the built dsm plugin binaries")
    ap.add_argument("--hub", type=Path, help="a checkout or bare git directory of meltano/hub")
    args = ap.parse_args()
    if not args.builtins and not args.hub:
        ap.error("nothing to do: pass --builtins DIR, --hub PATH or both")
    if args.builtins:
        refresh_builtins(args.builtins)
    if args.hub:
        refresh_hub(args.hub)
    return 0


if __name__ == "__main__":
    sys.exit(main())
