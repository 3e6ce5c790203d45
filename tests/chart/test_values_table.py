"""The chart README's values tables: generated from values.yaml's `# --` comments, and current.

The generator is npm's @bitnami/readme-generator-for-helm (`.tools/bin/readme-generator`, from
`.ci/install-tools`); `values_table.py` translates the comments into its `## @param` form.
"""

from __future__ import annotations

import difflib
import re
import textwrap

import pytest
from chart_support import CHART, find_tool
from values_table import bitnami_values, render_readme

README = (CHART / "README.md").read_text(encoding="utf-8")
VALUES = (CHART / "values.yaml").read_text(encoding="utf-8")


def tags(values: str) -> list[str]:
    """The generator's comment lines that ``bitnami_values`` adds, without indentation."""
    lines = (ln.strip() for ln in bitnami_values(values).splitlines())
    return [ln for ln in lines if ln.startswith("## @")]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(
            """
            ## @section Main
            # -- The mode,
            # on two lines.
            mode: standalone
            """,
            ["## @section Main", "## @param mode The mode, on two lines."],
            id="scalar-with-continuation",
        ),
        pytest.param(
            """
            # -- No section yet.
            a: 1
            """,
            ["## @section General", "## @param a No section yet."],
            id="default-section",
        ),
        pytest.param(
            """
            ## @section S
            image:
              # -- Repository.
              repository: r
            """,
            ["## @section S", "## @param image.repository Repository."],
            id="undocumented-parent",
        ),
        pytest.param(
            """
            ## @section S
            # -- Resources of the container.
            resources:
              requests:
                cpu: 50m
              limits:
                memory: 256Mi
            """,
            [
                "## @section S",
                "## @extra resources Resources of the container.",
                "## @param resources.requests.cpu",
                "## @param resources.limits.memory",
            ],
            id="documented-block-lists-its-leaves",
        ),
        pytest.param(
            """
            ## @section S
            # -- Block.
            b:
              # -- Its own words.
              x: 1
              y: [a, b]
              z: {}
            """,
            [
                "## @section S",
                "## @extra b Block.",
                "## @param b.x Its own words.",
                "## @param b.y",
                "## @param b.z",
            ],
            id="leaf-comment-wins-scalar-lists-and-empty-maps-are-leaves",
        ),
        pytest.param(
            """
            ## @section S
            np:
              # -- Peers.
              from:
                - namespaceSelector:
                    matchLabels:
                      kubernetes.io/metadata.name: argo-rollouts
              # -- After the list.
              enabled: false
            """,
            [
                "## @section S",
                "## @extra np.from Peers.",
                "## @param np.from[0].namespaceSelector.matchLabels.kubernetes.io/metadata.name",
                "## @param np.enabled After the list.",
            ],
            id="list-of-mappings",
        ),
        pytest.param(
            """
            ## @section S
            # -- States `a|b` and [brackets].
            a: 1
            # -- [not a modifier]
            b: 2
            """,
            [
                "## @section S",
                "## @param a States `a\\|b` and [brackets].",
                "## @param b \\[not a modifier]",
            ],
            id="pipes-and-brackets-escaped",
        ),
        pytest.param(
            """
            ## @section S
            # -- Detached by a blank line.

            a: 1
            """,
            ["## @section S"],
            id="blank-line-ends-the-comment",
        ),
    ],
)
def test_comments_translate_to_generator_tags(values: str, expected: list[str]) -> None:
    assert tags(textwrap.dedent(values)) == expected


def test_translation_keeps_values_yaml_and_adds_only_comments() -> None:
    out = bitnami_values(VALUES)
    kept = [ln for ln in out.splitlines() if not ln.strip().startswith("## @")]
    original = [ln for ln in VALUES.splitlines() if not ln.strip().startswith("## @")]
    assert kept == original


@pytest.fixture(scope="module")
def generator() -> str:
    return find_tool("readme-generator")


@pytest.mark.tools
def test_readme_values_tables_are_current(generator: str) -> None:
    """Regenerate the README from values.yaml in a temporary copy: nothing may change."""
    wanted = render_readme(README, VALUES, generator)
    diff = "".join(
        difflib.unified_diff(
            README.splitlines(keepends=True),
            wanted.splitlines(keepends=True),
            "charts/kongsplit/README.md",
            "generated",
        )
    )
    assert not diff, f"stale values tables: run `python tests/chart/values_table.py`\n{diff}"
    assert "| `config.kong.url`" in README  # the tables really are there


@pytest.mark.tools
def test_a_new_documented_block_is_picked_up(generator: str) -> None:
    """A block added to values.yaml with `# --` comments gets its rows, in its section."""
    block = textwrap.indent(
        textwrap.dedent(
            """\
            exampleExporter:
              # -- Create an example exporter.
              enabled: false
              # -- Labels the example exporter carries.
              labels:
                team: "1"
            """
        ),
        "  ",
    )
    values = VALUES.replace("metrics:\n", "metrics:\n" + block, 1)
    readme = render_readme(README, values, generator)
    monitoring = readme.split("### Monitoring", 1)[1].split("\n### ", 1)[0]
    rows = {}
    for line in monitoring.splitlines():
        if line.startswith("| `"):
            name, description, value = (
                c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))
            )
            rows[name] = (description, value)
    enabled = rows["`metrics.exampleExporter.enabled`"]
    assert enabled == ("Create an example exporter.", "`false`")
    assert rows["`metrics.exampleExporter.labels`"][0] == "Labels the example exporter carries."
    assert readme.replace(monitoring, "") == README.replace(
        README.split("### Monitoring", 1)[1].split("\n### ", 1)[0], ""
    )


@pytest.mark.tools
def test_an_undocumented_key_fails_the_generator(generator: str) -> None:
    values = VALUES.replace("replicaCount: 2\n", "replicaCount: 2\nsurprise: 1\n", 1)
    with pytest.raises(RuntimeError, match="Missing metadata for key: surprise"):
        render_readme(README, values, generator)
