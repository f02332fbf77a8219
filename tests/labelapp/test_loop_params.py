"""The launch form, the API and run_iteration expose exactly the loop's parameter object."""

import argparse
import json

import pytest
from django.urls import reverse

from labelapp.api.iterations import IterationLaunchSerializer
from labelapp.management.commands.run_iteration import Command as RunIterationCommand
from labelapp.services.iterations import default_params, iteration_params_clean
from labelapp.views.iterations import IterationLaunchForm
from learning.loop import LoopParams
from tests.labelapp.factories import make_dataset

pytestmark = pytest.mark.django_db


def test_launch_form_fields_are_the_parameter_object():
    dataset = make_dataset()
    form = IterationLaunchForm(dataset=dataset)
    assert list(form.fields) == list(LoopParams.names())
    for info in LoopParams.describe():
        field = form.fields[info.name]
        assert field.initial == info.default
        assert field.label == info.label and info.help in field.help_text
    assert default_params(dataset) == LoopParams.defaults()


def test_api_serializer_fields_are_the_parameter_object():
    fields = IterationLaunchSerializer().fields
    assert list(fields) == list(LoopParams.names())
    for info in LoopParams.describe():
        assert f"Default {info.default}" in fields[info.name].help_text


def test_run_iteration_flags_are_the_parameter_object():
    parser = argparse.ArgumentParser()
    RunIterationCommand().add_arguments(parser)
    dests = {a.dest: a for a in parser._actions}
    for info in LoopParams.describe():
        action = dests[info.name]
        assert action.option_strings == [info.flag]
        assert action.default is None  # unset flags keep the object's default
        assert f"Default {info.default}" in action.help
    own = {"help", "dataset", "wait", "timeout"}
    assert set(dests) - own - set(LoopParams.names()) <= {
        "verbosity",
        "settings",
        "pythonpath",
        "traceback",
        "no_color",
        "force_color",
        "skip_checks",
        "version",
    }


def test_service_defaults_and_validation_come_from_the_object():
    assert iteration_params_clean({}) == LoopParams.defaults()
    cleaned = iteration_params_clean({"batch_size": "40", "n_clusters": "4"})
    assert cleaned == LoopParams(batch_size=40, n_clusters=4).to_dict()


def test_launch_page_labels_and_ranges_are_readable(admin_client):
    dataset = make_dataset()
    html = admin_client.get(reverse("iteration-launch", args=[dataset.name])).content.decode()
    assert "Batch size" in html and "1 to 5,000" in html
    assert "2.14748e+09" not in html


def test_exported_params_json_is_the_object(tmp_path):
    # params.json in a model folder is LoopParams.to_dict(): it round-trips through the object.
    params = LoopParams(batch_size=20, n_clusters=3)
    path = tmp_path / "params.json"
    path.write_text(json.dumps(params.to_dict()))
    assert LoopParams.from_mapping(json.loads(path.read_text())) == params
