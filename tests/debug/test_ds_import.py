"""import-ds on pydolphinscheduler's own example files: each one with supported task types is defined."""

from __future__ import annotations

from pathlib import Path

import pytest

from easysched_es.ds_import import DsImportError, import_ds
from easysched_es.flows import load_flow, load_schedule
from tests.harness import cli, cli_json

EXAMPLES = Path(__file__).parent / "ds_examples"
SUPPORTED = ["tutorial", "Shell", "Dependent", "Dependent_External", "Condition", "Switch", "SubWorkflow",
             "example_sub_workflow", "MoreConfiguration"]


@pytest.mark.parametrize("name", SUPPORTED)
def test_each_supported_example_becomes_a_valid_definition(name: str, tmp_path: Path) -> None:
    for imported in import_ds(EXAMPLES / f"{name}.yaml"):
        path = tmp_path / f"{imported.name}.yaml"
        path.write_text(imported.yaml())
        definition = load_flow(path)
        assert definition.name == imported.name
        load_schedule(path)


def test_the_mapping_of_the_tutorial_and_the_logic_tasks(tmp_path: Path) -> None:
    (tutorial,) = import_ds(EXAMPLES / "tutorial.yaml")
    doc = tutorial.document
    assert [t["name"] for t in doc["tasks"]] == ["task_parent", "task_child_one", "task_child_two", "task_union"]
    assert doc["tasks"][3]["upstream"] == ["task_child_one", "task_child_two"]
    assert doc["schedule"] == {"cron": "0 0 0 * * ? *", "timezone": "UTC", "start": "2021-01-01"}
    assert not tutorial.release and any("run" in n for n in tutorial.notes)
    (switch,) = import_ds(EXAMPLES / "Switch.yaml")
    spec = next(t for t in switch.document["tasks"] if t["type"] == "SWITCH")["switch"]
    assert spec == {"cases": [{"condition": "${var} > 1", "next": "switch_child_1"}], "default": "switch_child_2"}
    (cond,) = import_ds(EXAMPLES / "Condition.yaml")
    task = next(t for t in cond.document["tasks"] if t["type"] == "CONDITIONS")
    assert task["dependence"]["items"][2] == {"task": "pre_task_3", "state": "FAILURE"}
    assert task["condition_result"] == {"success_node": ["success_branch"], "failed_node": ["fail_branch"]}
    sub, parent = import_ds(EXAMPLES / "SubWorkflow.yaml")
    assert sub.name == "example_workflow_for_sub_workflow"
    assert parent.document["tasks"][0]["sub_workflow"] == {"workflow": sub.name}
    (more,) = import_ds(EXAMPLES / "MoreConfiguration.yaml")
    shell = more.document["tasks"][0]
    assert shell["retry_interval"] == 300.0 and shell["timeout"] == 3600.0 and shell["priority"] == "HIGH"
    assert "${HOME}" in shell["command"] and any("delay_time is not mapped" in n for n in more.notes)


def test_unsupported_task_types_are_refused_with_their_name() -> None:
    with pytest.raises(DsImportError, match="task type 'python' is not supported"):
        import_ds(EXAMPLES / "Python.yaml")
    with pytest.raises(DsImportError, match="task type 'sql' is not supported"):
        import_ds(EXAMPLES / "Sql.yaml")


def test_import_ds_on_the_command_line_defines_the_workflows(tmp_path: Path) -> None:
    data = tmp_path / "data"
    out = cli_json(data, "import-ds", str(EXAMPLES / "SubWorkflow.yaml"), "--out", str(tmp_path / "flows"),
                   "--define")
    assert [o["workflow"] for o in out] == ["example_workflow_for_sub_workflow", "SubWorkflow"]
    assert all(o["defined"] for o in out)
    started = cli_json(data, "start", "SubWorkflow")
    assert started["instance"].startswith("0-")
    printed = cli(data, "import-ds", str(EXAMPLES / "tutorial.yaml"), check=True)
    assert "name: tutorial" in printed.stdout and "note: tutorial:" in printed.stderr
    refused = cli(data, "import-ds", str(EXAMPLES / "Python.yaml"), "--json")
    assert refused.returncode == 1 and '"kind": "invalid_definition"' in refused.stdout
