"""The docs site: the generated configuration reference covers every schema key, and no link dangles.

The reference pages are rendered by the mkdocs hook (docs/hooks/schema_reference.py) exactly as
`mkdocs build` renders them; this test walks the schemas independently of the hook, so a key the hook
skipped fails here. `mkdocs build --strict` itself runs in .ci/run.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _hook():
    spec = importlib.util.spec_from_file_location("schema_reference", DOCS / "hooks" / "schema_reference.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hook = _hook()


def property_paths(node: dict, path: str = "") -> set[str]:
    """Every property of a schema as a dotted path (`a.b`, `list[].c`, `map.<name>.d`), walked by hand."""
    found: set[str] = set()
    for key, sub in node.get("properties", {}).items():
        here = f"{path}.{key}" if path else key
        found |= {here} | property_paths(sub, here)
    if isinstance(node.get("items"), dict):
        found |= property_paths(node["items"], f"{path}[]")
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        found |= property_paths(extra, f"{path}.<name>" if path else "<name>")
    for branch in ("anyOf", "oneOf", "allOf"):
        for sub in node.get(branch, []):
            found |= property_paths(sub, path)
    return found


def rendered(page: str) -> str:
    return hook.render((DOCS / page).read_text())


def nav_pages() -> set[str]:
    def walk(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)
        elif isinstance(node, dict):
            for value in node.values():
                yield from walk(value)

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    return set(walk(config["nav"]))


SCHEMAS = sorted(p.name.removesuffix(".schema.json") for p in (ROOT / "schemas").glob("*.schema.json"))


@pytest.mark.parametrize("name", SCHEMAS)
def test_docs_site_reference_lists_every_schema_key_with_its_description(name):
    schema = json.loads((ROOT / "schemas" / f"{name}.schema.json").read_text())
    page = f"reference/{name}.md"
    assert (DOCS / page).is_file(), f"schemas/{name}.schema.json needs a reference page docs/{page}"
    assert page in nav_pages(), f"docs/{page} is not in mkdocs.yml's nav"
    text = rendered(page)
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([^`]+)` \|.*\| (.*) \|$", text, re.M)}
    paths = property_paths(schema)
    assert len(paths) >= 3  # the walk found the keys (events.d has five)
    missing = sorted(paths - rows.keys())
    assert not missing, f"keys of schemas/{name}.schema.json missing from the reference: {missing}"
    assert all(rows[p] for p in paths), "every key has its description"


def test_docs_site_reference_lists_every_plugin_option():
    text = rendered("reference/plugins.md")
    schemas = hook.plugin_schemas()
    assert {"auth", "cors", "envelope", "logging", "rate_limit", "request_id"} <= schemas.keys()
    for name, schema in schemas.items():
        section = text.split(f"### `{name}`\n", 1)[1].split("\n### ", 1)[0]
        for path in property_paths(schema):
            assert f"| `{path}` |" in section, f"plugin {name}: option {path} missing from the reference"


def test_docs_site_every_plugin_has_a_page_naming_each_of_its_options():
    """One page per installed plugin, in the nav; hand-written option tables may not lag the plugin's schema."""
    for name, schema in hook.plugin_schemas().items():
        page = f"plugins/{name}.md"
        assert (DOCS / page).is_file() and page in nav_pages(), f"plugin {name} needs docs/{page} in the nav"
        text = rendered(page)
        missing = [key for key in schema.get("properties", {}) if not re.search(rf"`{key}[`.\[]", text)]
        assert not missing, f"docs/{page} does not describe the options {missing}"


def test_docs_site_generated_cells_keep_the_table_shape():
    """A `|` in a description is escaped, so every row has the header's four cells."""
    schema = {"properties": {"a": {"type": "string", "description": "x | y, `a|b`"}}}
    row = hook.table(schema).splitlines()[2]
    assert row == "| `a` | string |  | x \\| y, `a|b` |"


def test_docs_site_every_page_is_in_the_nav():
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert pages - nav_pages() == set(), "pages missing from mkdocs.yml's nav"
    assert nav_pages() - pages == set(), "nav entries without a page"


def test_docs_site_quickstart_includes_the_readme_commands_and_tour():
    """The quickstart shows the README's own commands and tour (pymdownx.snippets), so the two never differ."""
    readme = (ROOT / "README.md").read_text()
    quickstart = (DOCS / "quickstart.md").read_text()
    for section in ("commands", "tour"):
        assert f'--8<-- "README.md:{section}"' in quickstart
        start, end = f"<!-- --8<-- [start:{section}] -->", f"<!-- --8<-- [end:{section}] -->"
        assert readme.count(start) == 1 and readme.count(end) == 1
        assert "```" in readme.split(start, 1)[1].split(end, 1)[0]
    tour = readme.split("## A five-minute tour\n", 1)[1].split("\n## ", 1)[0]
    assert tour.startswith("<!-- --8<-- [start:tour] -->") and tour.rstrip().endswith("[end:tour] -->")


LINK = re.compile(r"\]\(([^)\s]+)\)")


def _linked_files():
    for page in [ROOT / "README.md", ROOT / "CHANGELOG.md", *DOCS.rglob("*.md")]:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold no links
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            yield page, target.split("#", 1)[0]


def test_docs_site_relative_links_point_at_files_that_exist():
    checked = 0
    for page, target in _linked_files():
        assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to a missing {target}"
        checked += 1
    assert checked > 30


def test_docs_site_no_file_names_a_missing_docs_page():
    """Comments and docstrings that send a reader to docs/<page>.md name a page that exists."""
    files = [ROOT / "gateway.yaml", ROOT / "Dockerfile", ROOT / "pyproject.toml"]
    for folder in ("gateway_engine", "plugins", "schemas", "routes.d", "workflows.d", "webhooks.d", "examples"):
        files += [p for p in (ROOT / folder).rglob("*") if p.suffix in {".py", ".yaml", ".json", ".md"}]
    named = 0
    for path in files:
        for ref in re.findall(r"(?<![\w/])docs/[\w./-]+\.md", path.read_text()):
            assert (ROOT / ref).is_file(), f"{path.relative_to(ROOT)} names {ref}, which does not exist"
            named += 1
    assert named >= 3
