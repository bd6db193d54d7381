"""The `locker` command as a newcomer meets it: --help, the schema export, the demo."""

import json
import re
import sys
from pathlib import Path

from typer.testing import CliRunner

from locker.cli import app

LOCKER = Path(sys.executable).with_name("locker")
runner = CliRunner()


def test_help_explains_the_system_and_lists_the_commands():
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "parcel lockers" in result.output.lower()
    assert "lockers/v1/{cab}/" in result.output
    for command in ("demo", "sim", "protocol", "cabinet", "cloud"):
        assert re.search(rf"│ {command}\s", result.output), command


def test_protocol_schema_writes_one_valid_schema_per_message(tmp_path):
    result = runner.invoke(app, ["protocol", "schema", str(tmp_path / "schemas")])
    assert result.exit_code == 0, result.output
    index = json.loads((tmp_path / "schemas" / "index.json").read_text())
    written = sorted(p.name for p in (tmp_path / "schemas").glob("*.json"))
    assert f"wrote {len(written)} schema files" in result.output
    text = json.dumps(index)
    for name in ("parcel.deposited", "codes.put", "event-ack", "lockers/v1/{cab}/state"):
        assert name in text
    for path in (tmp_path / "schemas").glob("*.json"):
        if path.name != "index.json":
            assert json.loads(path.read_text())["$schema"].endswith("2020-12/schema")


def test_protocol_asyncapi_writes_what_docs_holds(tmp_path):
    result = runner.invoke(app, ["protocol", "asyncapi", str(tmp_path / "asyncapi.json")])
    assert result.exit_code == 0, result.output
    committed = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"
    assert (tmp_path / "asyncapi.json").read_text() == committed.read_text()
