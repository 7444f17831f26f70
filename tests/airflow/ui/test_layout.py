"""Pages that hold up: long names keep their full text on hover, the New job form's edges."""

from __future__ import annotations

import re

import pytest

from tests.airflow.ui.seed import seed_job

pytestmark = pytest.mark.airflow

LONG_NAME = "Upgrade-the-logging-library-in-every-service-" + "x" * 55  # 100 characters
LONG_REPO = "github.com/acme/" + "a-repository-with-a-very-long-name-" * 3


@pytest.fixture
def ui(client, tokens):
    client.cookies.set("_token", tokens["admin"])
    return client


def test_long_names_and_paths_keep_their_full_text_on_hover(ui, store) -> None:
    assert len(LONG_NAME) == 100
    job = seed_job(store, name=LONG_NAME, repositories=(LONG_REPO, "github.com/acme/web"))
    jobs = ui.get("/codybatch/").text
    # The jobs list lays out fixed columns; the name is cut to two lines with its title.
    assert 'class="list jobs fixed"' in jobs and "<colgroup>" in jobs
    assert f'<a class="clamp" href="/codybatch/jobs/{job.job_id}" title="{LONG_NAME}">' in jobs
    assert f'<div class="muted small clip" title="{LONG_REPO}">' in jobs

    page = ui.get(f"/codybatch/jobs/{job.job_id}").text
    # A repository path may break after a slash, not in the middle of a word.
    assert f'<h2 class="path" title="{LONG_REPO}">github.com/<wbr>acme/<wbr>a-repository' in page


def test_the_new_job_form_marks_only_what_is_required(ui) -> None:
    form = ui.get("/codybatch/jobs/new").text
    inputs = re.findall(r"<(?:input|textarea|select)\b[^>]*>", form)
    required = [tag for tag in inputs if re.search(r"\brequired\b", tag)]
    assert [re.search(r'name="([^"]+)"', t).group(1) for t in required] == ["name"]
    assert not [t for t in inputs if 'type="checkbox"' in t and "required" in t]


def test_the_key_free_way_is_in_view_and_placeholders_are_not_values(ui) -> None:
    form = ui.get("/codybatch/jobs/new").text
    advanced = form[form.index("<details") : form.index("</details>")]
    steps = form.index('name="steps"')
    assert 'name="steps"' not in advanced and steps < form.index("<details")
    assert form.index('name="prompt"') < steps  # side by side: a prompt, steps, or both
    assert "no API key needed" in form
    for name, placeholder in re.findall(
        r'name="([^"]+)"[^>]*placeholder="([^"]*)"', form.replace("\n", " ")
    ):
        # An example reads as one ("e.g. ..."), a default says so: none looks typed in.
        assert placeholder.startswith(("e.g.", "default ", "the ", "Describe ", "What ")) or (
            "e.g." in placeholder or name.startswith("var__")
        ), (name, placeholder)


def test_validation_styles_wait_for_the_person(ui) -> None:
    css = ui.get("/codybatch/static/codybatch.css").text
    assert ":user-invalid" in css
    assert not re.search(r":invalid\b", css.replace(":user-invalid", ""))
