"""The public surface of components: what it exports, and how it names itself."""

from __future__ import annotations

import inspect
import subprocess
import sys

import attrs

import components


def test_all_is_a_sorted_tuple_of_real_names() -> None:
    """``components.__all__`` is a sorted tuple and every name in it exists."""
    assert isinstance(components.__all__, tuple)
    assert list(components.__all__) == sorted(components.__all__)
    for name in components.__all__:
        assert hasattr(components, name), name


def test_public_objects_say_they_are_components() -> None:
    """Classes and functions from private modules report ``__module__ == "components"``."""
    for name in components.__all__:
        obj = getattr(components, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__module__ == "components", name


def test_built_in_components_are_frozen_final_attrs_classes_with_a_default_name() -> None:
    """Every built-in component is a frozen, slotted, final attrs class with a named default."""
    classes = [
        components.AutoregressiveFeatures,
        components.LagFeatures,
        components.RollingFeatures,
        components.InteractionFeatures,
        components.SQLWindowFeatures,
        components.HttpLookupFeatures,
        components.CorrelationSelector,
        components.MutualInformationSelector,
    ]
    names = set()
    for cls in classes:
        assert attrs.has(cls), cls
        assert "__slots__" in vars(cls), cls
        assert getattr(cls, "__final__", False), cls
        name_field = attrs.fields_dict(cls)["name"]
        assert isinstance(name_field.default, str), cls
        names.add(name_field.default)
    assert len(names) == len(classes)


def test_import_needs_only_the_data_extra() -> None:
    """``import components`` imports neither httpx nor rich (the "cli" extra) nor trio."""
    code = (
        "import sys, components; "
        "print(','.join(m for m in ('httpx', 'rich', 'trio') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""
