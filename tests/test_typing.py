"""Every public name of `tfp_nice` and every public method of its classes carries type
hints (the package ships `py.typed`; `make typecheck` runs mypy over tfp_nice/)."""

import inspect

import pytest

import tfp_nice as tn

MIXINS = ("FlowDensity", "FlowTraining")  # the parts Flow is made of


def _public_callables():
    found = {}
    for name in tn.__all__:
        obj = getattr(tn, name)
        if inspect.ismodule(obj):
            for sub in getattr(obj, "__all__", []):
                member = getattr(obj, sub)
                if inspect.isfunction(member):
                    found[f"{name}.{sub}"] = member
        elif inspect.isclass(obj):
            found[f"{name}.__init__"] = obj.__init__
            owners = [obj] + [b for b in obj.__mro__ if b.__name__ in MIXINS]
            for owner in owners:
                for attr, member in vars(owner).items():
                    if attr.startswith("_"):
                        continue
                    if isinstance(member, (classmethod, staticmethod)):
                        member = member.__func__
                    if isinstance(member, property):
                        member = member.fget
                    if inspect.isfunction(member):
                        found[f"{name}.{attr}"] = member
        elif inspect.isfunction(obj):
            found[name] = obj
    return found


PUBLIC = _public_callables()


def test_the_public_api_is_large_enough_to_mean_something():
    assert len(PUBLIC) > 200
    assert "Flow.log_prob" in PUBLIC and "Transformer.forward" in PUBLIC


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_every_public_callable_is_typed(name):
    fn = PUBLIC[name]
    signature = inspect.signature(fn)
    untyped = [p.name for p in signature.parameters.values()
               if p.name not in ("self", "cls") and p.annotation is inspect.Parameter.empty
               and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    assert not untyped, f"{name}: parameters without a type hint: {untyped}"
    if not name.endswith("__init__"):
        assert signature.return_annotation is not inspect.Signature.empty, \
            f"{name}: no return type hint"
