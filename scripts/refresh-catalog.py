#!/usr/bin/env python3
"""Regenerates dsm's catalog of known plugins in taps/catalog/<plugin_type>/<name>--<variant>.json.

Each file has the shape of a Meltano plugin lock file. No setting is written by hand:

* dsm's built-in plugins: from the built binaries' own `--about --format json`
  (pass --builtins DIR, the folder holding tap-csv, target-sqlite, ...).
* SDK plugins: each package is installed at the pinned version into a throwaway virtual
  environment (uv when available, else venv + pip) and its executable's `--about --format json`
  gives the settings and capabilities.
* Classic (pre-SDK) plugins have no `--about`: the package's source distribution is downloaded
  (`pip download --no-deps --no-binary :all:`), the settings are read from its README (the
  configuration table, or else the example config JSON), and the executable from its setup.py.
  The entry's `settings_source` names the file the settings came from.

Usage: scripts/refresh-catalog.py [--builtins target/debug] [--only NAME ...] [--skip-python]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "taps" / "catalog"

BUILTINS = [
    ("extractors", "tap-csv", "CSV files"),
    ("extractors", "tap-jsonl", "JSON-lines files"),
    ("extractors", "tap-sqlite", "SQLite"),
    ("extractors", "tap-postgres", "PostgreSQL"), ("loaders", "target-postgres", "PostgreSQL"),
    ("loaders", "target-jsonl", "JSON-lines files"),
    ("loaders", "target-csv", "CSV files"),
    ("loaders", "target-sqlite", "SQLite"),
]

# SDK plugins: (plugin_type, name, variant, package, version, label, description)
SDK = [
    ("extractors", "tap-github", "meltanolabs", "meltanolabs-tap-github", "1.30.1", "GitHub",
     "Code hosting platform: repositories, issues, pull requests, commits"),
    ("extractors", "tap-postgres", "meltanolabs", "meltanolabs-tap-postgres", "0.10.0", "PostgreSQL",
     "PostgreSQL database extractor"),
    ("extractors", "tap-snowflake", "meltanolabs", "meltanolabs-tap-snowflake", "0.5.6", "Snowflake",
     "Snowflake cloud data warehouse extractor"),
    ("extractors", "tap-mongodb", "meltanolabs", "meltanolabs-tap-mongodb", "0.4.1", "MongoDB",
     "MongoDB and AWS DocumentDB extractor"),
    ("extractors", "tap-rest-api-msdk", "widen", "tap-rest-api-msdk", "1.4.2", "REST API",
     "Generic extractor for JSON REST APIs"),
    ("extractors", "tap-dbt", "edgarrmondragon", "tap-dbt", "0.17.0", "dbt Cloud",
     "dbt Cloud accounts, jobs and runs"),
    ("loaders", "target-postgres", "meltanolabs", "meltanolabs-target-postgres", "0.8.1", "PostgreSQL",
     "PostgreSQL database loader"),
    ("loaders", "target-snowflake", "meltanolabs", "meltanolabs-target-snowflake", "0.20.4", "Snowflake",
     "Snowflake cloud data warehouse loader"),
    ("loaders", "target-csv", "meltanolabs", "meltanolabs-target-csv", "0.5.0", "CSV",
     "Writes streams to CSV files"),
    ("loaders", "target-bigquery", "z3z1ma", "z3-target-bigquery", "0.7.2", "BigQuery",
     "Google BigQuery data warehouse loader"),
]

# Classic plugins: (plugin_type, name, variant, package, version, label, description, capabilities)
TAP_CAPS = ["catalog", "discover", "state"]
PROPS_CAPS = ["properties", "discover", "state"]
CLASSIC = [
    ("extractors", "tap-postgres", "transferwise", "pipelinewise-tap-postgres", "2.1.0", "PostgreSQL",
     "PostgreSQL database extractor (PipelineWise)", TAP_CAPS),
    ("extractors", "tap-mysql", "transferwise", "pipelinewise-tap-mysql", "1.6.0", "MySQL/MariaDB",
     "MySQL and MariaDB database extractor (PipelineWise)", TAP_CAPS),
    ("extractors", "tap-mongodb", "transferwise", "pipelinewise-tap-mongodb", "1.5.0", "MongoDB",
     "MongoDB extractor (PipelineWise)", TAP_CAPS),
    ("extractors", "tap-s3-csv", "transferwise", "pipelinewise-tap-s3-csv", "3.0.1", "S3 CSV",
     "CSV files in Amazon S3 (PipelineWise)", TAP_CAPS),
    ("extractors", "tap-kafka", "transferwise", "pipelinewise-tap-kafka", "8.2.1", "Kafka",
     "Apache Kafka topics (PipelineWise)", TAP_CAPS),
    ("extractors", "tap-slack", "transferwise", "pipelinewise-tap-slack", "1.1.1", "Slack",
     "Slack channels, messages and users (PipelineWise)", TAP_CAPS),
    ("extractors", "tap-stripe", "singer-io", "tap-stripe", "3.3.0", "Stripe",
     "Stripe payments: charges, customers, invoices, subscriptions", PROPS_CAPS),
    ("extractors", "tap-snowflake", "transferwise", "pipelinewise-tap-snowflake", "3.0.0", "Snowflake",
     "Snowflake cloud data warehouse extractor (PipelineWise)", TAP_CAPS),
    ("extractors", "tap-github", "transferwise", "pipelinewise-tap-github", "1.1.1", "GitHub",
     "GitHub repositories, issues and pull requests (PipelineWise)", TAP_CAPS),
    ("extractors", "tap-salesforce", "singer-io", "tap-salesforce", "2.8.1", "Salesforce",
     "Salesforce CRM objects", PROPS_CAPS),
    ("loaders", "target-postgres", "transferwise", "pipelinewise-target-postgres", "2.1.2", "PostgreSQL",
     "PostgreSQL database loader (PipelineWise)", []),
    ("loaders", "target-snowflake", "transferwise", "pipelinewise-target-snowflake", "2.3.0", "Snowflake",
     "Snowflake cloud data warehouse loader (PipelineWise)", []),
    ("loaders", "target-redshift", "transferwise", "pipelinewise-target-redshift", "1.6.0", "Amazon Redshift",
     "Amazon Redshift data warehouse loader (PipelineWise)", []),
    ("loaders", "target-bigquery", "transferwise", "pipelinewise-target-bigquery", "1.5.0", "BigQuery",
     "Google BigQuery data warehouse loader (PipelineWise)", []),
    ("loaders", "target-s3-csv", "transferwise", "pipelinewise-target-s3-csv", "2.0.0", "S3 CSV",
     "Writes CSV files to Amazon S3 (PipelineWise)", []),
    ("extractors", "tap-gitlab", "meltanolabs", "tap-gitlab", "1.0.1", "GitLab",
     "DevOps platform: projects, issues, merge requests, pipelines", PROPS_CAPS),
    ("loaders", "target-duckdb", "jwills", "target-duckdb", "0.8.0", "DuckDB",
     "DuckDB embedded analytics database loader", []),
    ("loaders", "target-jsonl", "andyh1203", "target-jsonl", "0.1.4", "JSON Lines",
     "Writes streams to JSON-lines files", []),
]

SENSITIVE_WORDS = ("password", "secret", "token", "private_key", "api_key", "access_key", "credentials")


def label_of(name: str) -> str:
    words = re.split(r"[_\-.]", name)
    special = {"id": "ID", "url": "URL", "api": "API", "ssl": "SSL", "ssh": "SSH", "s3": "S3", "aws": "AWS"}
    return " ".join(special.get(w.lower(), w.capitalize()) for w in words if w)


def kind_of(schema: dict) -> tuple[str, dict]:
    """Meltano setting kind (and extra keys) for a JSON Schema property."""
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


def entry(plugin_type, name, variant, label, description, executable, capabilities, settings,
          groups, pip_url=None, source=None) -> dict:
    e = {
        "plugin_type": plugin_type,
        "name": name,
        "namespace": name.replace("-", "_"),
        "variant": variant,
        "label": label,
        "description": description,
    }
    if pip_url:
        e["pip_url"] = pip_url
    e["executable"] = executable
    e["capabilities"] = capabilities
    e["settings_group_validation"] = groups
    e["settings"] = settings
    if source:
        e["settings_source"] = source
    return e


def write(e: dict) -> None:
    path = CATALOG / e["plugin_type"] / f"{e['name']}--{e['variant']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(e, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {path.relative_to(ROOT)} ({len(e['settings'])} settings)")


def run_about(executable: str) -> dict:
    out = subprocess.run([executable, "--about", "--format", "json"], capture_output=True, text=True,
                         timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"`{executable} --about --format json` failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def installer() -> list[str] | None:
    uv = shutil.which("uv")
    return [uv] if uv else None


def make_venv(path: Path) -> Path:
    uv = installer()
    if uv:
        subprocess.run(uv + ["venv", "--quiet", str(path)], check=True)
    else:
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    return path


def pip_install(venv: Path, spec: str) -> None:
    uv = installer()
    if uv:
        cmd = uv + ["pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), spec]
    else:
        cmd = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", spec]
    subprocess.run(cmd, check=True)


def console_scripts(venv: Path, package: str) -> list[str]:
    code = (
        "import importlib.metadata as m, sys\n"
        "d = m.distribution(sys.argv[1])\n"
        "print('\\n'.join(e.name for e in d.entry_points if e.group == 'console_scripts'))\n"
    )
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code, package], capture_output=True,
                         text=True, check=True)
    return [s for s in out.stdout.split() if s]


def refresh_sdk(row, work: Path) -> dict:
    plugin_type, name, variant, package, version, label, description = row
    venv = make_venv(work / f"venv-{package}")
    try:
        pip_install(venv, f"{package}=={version}")
        scripts = console_scripts(venv, package)
        executable = name if name in scripts else (scripts[0] if scripts else name)
        try:
            about = run_about(str(venv / "bin" / executable))
        except RuntimeError as e:
            # Older SDK releases import pkg_resources, which new setuptools no longer ships.
            if "pkg_resources" not in str(e):
                raise
            pip_install(venv, "setuptools<70")
            about = run_about(str(venv / "bin" / executable))
    finally:
        shutil.rmtree(venv, ignore_errors=True)
    settings, groups = settings_from_about(about)
    return entry(plugin_type, name, variant, label, description, executable,
                 about.get("capabilities", []), settings, groups, pip_url=f"{package}=={version}",
                 source=f"`{executable} --about --format json` of {package}=={version}")


# --- classic plugins: settings from the README in the source distribution ---

IDENT = re.compile(r"^[a-z][a-z0-9_]*$")
# Keys of Singer messages, catalogs, metadata and state: an example holding them is no config.
NOT_CONFIG = {"type", "stream", "streams", "bookmarks", "stream_name", "metadata", "tap_stream_id",
              "replication_key_value", "selected", "text"}


def readme_tables(text: str) -> list[dict]:
    """Settings from markdown tables whose first column names config keys."""
    found: list[dict] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith("|") and i + 1 < len(lines) and re.match(r"^\|?\s*:?-{3,}", lines[i + 1].strip()):
            header = [c.strip().lower() for c in line.strip("|").split("|")]
            i += 2
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            col = lambda *names: next((k for k, h in enumerate(header) if any(n in h for n in names)), None)
            c_desc = col("description")
            c_type = col("type")
            c_default = col("default")
            c_req = col("required")
            for r in rows:
                if not r:
                    continue
                key = re.sub(r"[`*\s]", "", r[0])
                if not IDENT.match(key):
                    continue
                s = {"name": key}
                if c_type is not None and c_type < len(r):
                    s["_type"] = r[c_type].strip("` ").lower()
                if c_desc is not None and c_desc < len(r):
                    s["description"] = re.sub(r"\s+", " ", r[c_desc].replace("<br>", " ")).strip()
                if c_default is not None and c_default < len(r):
                    s["_default"] = r[c_default].strip("` ")
                if c_req is not None and c_req < len(r):
                    s["_required"] = r[c_req].strip().lower().startswith("yes")
                found.append(s)
            continue
        i += 1
    return found


def readme_json_examples(text: str) -> list[dict]:
    """Settings from the example configs (JSON objects in code blocks)."""
    found: list[dict] = []
    blocks = [(m.start(), m.group(1)) for m in re.finditer(r"```[a-z]*\n(.*?)```", text, flags=re.S)]
    blocks += [(m.start(), m.group(0)) for m in re.finditer(r"(?:\n(?: {4}|\t).*)+", text)]
    for start, block in blocks:
        before = text[max(0, start - 300):start].lower()
        if "state" in before and "config" not in before:
            continue  # an example state file
        block = re.sub(r"^(?: {4}|\t)", "", block, flags=re.M).strip()
        if not block.startswith("{"):
            continue
        cleaned = re.sub(r",(\s*[}\]])", r"\1", re.sub(r"//.*", "", block))
        # READMEs sometimes forget a comma at a line end.
        repaired = re.sub(r'(["\d}\]el])[ \t]*\n(\s*")', r"\1,\n\2", cleaned)
        obj = None
        for candidate in (cleaned, repaired):
            try:
                obj = json.loads(candidate)
                break
            except json.JSONDecodeError:
                continue
        if isinstance(obj, dict) and obj and all(IDENT.match(k) for k in obj):
            if NOT_CONFIG & set(obj):
                continue  # a Singer message, catalog or state, not a config
            found += [{"name": k, "_example": v} for k, v in obj.items()]
    return found


def readme_key_lists(text: str) -> list[dict]:
    """Settings from lines like "`key` - what it does"."""
    found = []
    for m in re.finditer(r"^\s*[-*]?\s*`([a-z][a-z0-9_]*)`\s*[-:\u2013]\s*(.+)$", text, flags=re.M):
        found.append({"name": m.group(1), "description": m.group(2).strip()})
    return found


def described_in(text: str, key: str) -> str | None:
    """The first README sentence that names `key` in backticks."""
    for para in re.split(r"\n\s*\n", text):
        if f"`{key}`" in para and not para.lstrip().startswith(("```", "{", "|")):
            flat = re.sub(r"\s+", " ", para).strip()
            for sentence in re.split(r"(?<=[.!?])\s+", flat):
                if f"`{key}`" in sentence:
                    return sentence[:400]
    return None


def classic_setting(s: dict) -> dict:
    name = s["name"]
    t = s.get("_type", "")
    ex = s.get("_example")
    if "bool" in t or isinstance(ex, bool):
        kind = "boolean"
    elif "int" in t or (isinstance(ex, int) and not isinstance(ex, bool)):
        kind = "integer"
    elif "float" in t or "number" in t or isinstance(ex, float):
        kind = "decimal"
    elif "list" in t or "array" in t or isinstance(ex, list):
        kind = "array"
    elif "object" in t or "dict" in t or isinstance(ex, dict):
        kind = "object"
    elif "date" in name and ("start" in name or "end" in name):
        kind = "date_iso8601"
    else:
        kind = "string"
    out = {"name": name, "kind": kind, "label": label_of(name)}
    if s.get("description"):
        out["description"] = s["description"]
    out["sensitive"] = any(w in name.lower() for w in SENSITIVE_WORDS)
    default = s.get("_default")
    if default and default.lower() not in ("none", "-", "null", ""):
        if kind == "boolean" and default.lower() in ("true", "false"):
            out["value"] = default.lower() == "true"
        elif kind == "integer" and re.fullmatch(r"-?\d+", default):
            out["value"] = int(default)
        elif kind == "string":
            out["value"] = default.strip("\"'")
    return out


def download_sdist(package: str, version: str, dest: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--ignore-requires-python", "--no-binary",
                    ":all:", "--dest", str(dest), f"{package}=={version}"], check=True)
    files = [p for p in dest.iterdir() if p.suffix in (".gz", ".zip")]
    if not files:
        raise RuntimeError(f"no source distribution of {package}=={version}")
    return files[0]


def sdist_files(archive: Path) -> dict[str, str]:
    wanted = re.compile(r"^[^/]+/(README[^/]*|setup\.py|setup\.cfg|pyproject\.toml)$", re.I)
    out = {}
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            for n in z.namelist():
                if wanted.match(n):
                    out[n.split("/", 1)[1]] = z.read(n).decode("utf-8", "replace")
    else:
        with tarfile.open(archive) as t:
            for m in t.getmembers():
                if wanted.match(m.name) and m.isfile():
                    out[m.name.split("/", 1)[1]] = t.extractfile(m).read().decode("utf-8", "replace")
    return out


def refresh_classic(row, work: Path) -> dict:
    plugin_type, name, variant, package, version, label, description, caps = row
    dest = work / f"sdist-{package}"
    dest.mkdir()
    archive = download_sdist(package, version, dest)
    files = sdist_files(archive)
    readme_name = next((n for n in files if n.lower().startswith("readme")), None)
    if not readme_name:
        raise RuntimeError(f"{package}=={version} has no README in its sdist")
    readme = files[readme_name]
    parts = [("configuration table", readme_tables(readme)),
             ("option list", readme_key_lists(readme)),
             ("example config", readme_json_examples(readme))]
    raw = [s for _, found in parts for s in found if s["name"] not in NOT_CONFIG]
    how = ", ".join(name for name, found in parts if found)
    if not raw:
        raise RuntimeError(f"no settings found in the README of {package}=={version}")
    merged: dict[str, dict] = {}
    for s in raw:
        into = merged.setdefault(s["name"], {})
        for k, v in s.items():
            into.setdefault(k, v)
    settings = []
    for s in merged.values():
        if not s.get("description"):
            found = described_in(readme, s["name"])
            if found:
                s["description"] = found
        settings.append(classic_setting(s))
    required = [s["name"] for s in raw if s.get("_required")]
    setup = files.get("setup.py", "") + files.get("setup.cfg", "") + files.get("pyproject.toml", "")
    m = re.search(r"['\"]?((?:tap|target)-[a-z0-9-]+)['\"]?\s*=\s*['\"]?[a-z_]+", setup)
    executable = m.group(1) if m else name
    shutil.rmtree(dest, ignore_errors=True)
    return entry(plugin_type, name, variant, label, description, executable, caps, settings,
                 [required] if required else [], pip_url=f"{package}=={version}",
                 source=f"{readme_name} ({how}) in the source distribution of {package}=={version}")


def refresh_builtins(bin_dir: Path) -> None:
    for plugin_type, name, label in BUILTINS:
        about = run_about(str(bin_dir / name))
        settings, groups = settings_from_about(about)
        write(entry(plugin_type, name, "dsm", label, about.get("description", ""), name,
                    about.get("capabilities", []), settings, groups,
                    source=f"`{name} --about --format json` (dsm built-in)"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--builtins", type=Path, help="folder with the built dsm plugin binaries")
    ap.add_argument("--only", nargs="*", help="only these packages")
    ap.add_argument("--skip-python", action="store_true", help="only the built-in plugins")
    args = ap.parse_args()
    if args.builtins:
        refresh_builtins(args.builtins)
    if args.skip_python:
        return 0
    failures = []
    with tempfile.TemporaryDirectory(prefix="dsm-catalog-") as tmp:
        work = Path(tmp)
        for row in SDK:
            if args.only and row[3] not in args.only:
                continue
            try:
                write(refresh_sdk(row, work))
            except Exception as e:  # report every failure, then exit non-zero
                failures.append(f"{row[3]}: {e}")
        for row in CLASSIC:
            if args.only and row[3] not in args.only:
                continue
            try:
                write(refresh_classic(row, work))
            except Exception as e:
                failures.append(f"{row[3]}: {e}")
    for f in failures:
        print(f"failed: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
