"""Every node of every registered pipeline is named for what it makes: the name is what logs,
kedro-viz and ``kedro run --to-nodes`` show, and Kedro would otherwise make one up from the
function and a hash of its datasets (``cohort_retention__4e7da31b``)."""

from __future__ import annotations

from kedro.framework.project import configure_project

from cltv.pipeline_registry import register_pipelines


def test_every_node_of_every_pipeline_has_a_name():
    configure_project("cltv")
    pipelines = register_pipelines()
    # Kedro keeps the name a node was given in _name (None: it makes one from a hash)
    unnamed = {
        f"{pipeline}: {node.name}"
        for pipeline, nodes in pipelines.items()
        for node in nodes.nodes
        if node._name is None
    }
    assert not unnamed, f"nodes without a name: {sorted(unnamed)}"
