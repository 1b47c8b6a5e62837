"""Write an engine's command-line flags as moesim's fixture (moesim/launch/flags/ENGINE-VERSION.json), from
the engine's own argument parser: the launch renderers' flags are checked against these files in
tests/test_launch.py, so a flag the engine does not define (or a value outside its choices) fails there.

Run once per engine version, in an environment where the engine imports (its GPU kernels are not needed:
only the parser is built). Third-party modules the parser never uses may be stubbed with ``--stub a,b``.

    python tools/extract_engine_flags.py sglang   # python -m sglang.launch_server
    python tools/extract_engine_flags.py vllm     # vllm serve

The fixture records, per option string: whether it takes a value, its choices, and whether the engine marks
it deprecated (the renderers must not use deprecated flags); for JSON-valued flags (vLLM's ``--eplb-config``
...), the fields their config classes take; for SGLang, the model files that give an expert-location config.
Nothing of the engine's code or help text is copied: names, arity and choices only.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import json
import sys
import types
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "moesim" / "launch" / "flags"


def _sglang() -> tuple[argparse.ArgumentParser, str, str]:
    import sglang
    from sglang.srt.server_args import ServerArgs
    p = argparse.ArgumentParser()
    ServerArgs.add_cli_args(p)
    return p, sglang.__version__, "sglang.srt.server_args.ServerArgs.add_cli_args (python -m sglang.launch_server)"


def _vllm() -> tuple[argparse.ArgumentParser, str, str]:
    import vllm
    from vllm.entrypoints.common.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser
    return (make_arg_parser(FlexibleArgumentParser()), vllm.__version__,
            "vllm.entrypoints.common.cli_args.make_arg_parser (vllm serve)")


def _vllm_json() -> dict[str, list[str]]:
    """The fields of the configs vLLM's JSON-valued flags parse into."""
    from vllm.config.kv_transfer import KVTransferConfig
    from vllm.config.parallel import EPLBConfig
    from vllm.config.speculative import SpeculativeConfig
    return {"--eplb-config": _fields(EPLBConfig), "--speculative-config": _fields(SpeculativeConfig),
            "--kv-transfer-config": _fields(KVTransferConfig)}


def _fields(cls) -> list[str]:
    names = getattr(cls, "__dataclass_fields__", None) or getattr(cls, "model_fields", {})
    return sorted(n for n in names if not n.startswith("_"))


def _sglang_extra() -> dict:
    """The model files whose classes give SGLang an expert-location config (``get_model_config_for_expert_location``;
    ``ModelConfigForExpertLocation.from_model_config`` returns None for every other model, and an
    ``--init-expert-location`` file is then ignored)."""
    import sglang
    models = Path(sglang.__file__).parent / "srt" / "models"
    mark = "def get_model_config_for_expert_location"
    files = [p for p in models.rglob("*.py") if mark in p.read_text(errors="replace")]
    return {"expert_location_models": sorted(p.relative_to(models).with_suffix("").as_posix() for p in files)}


def _dynamo(worker: str) -> tuple[argparse.ArgumentParser, str, str]:
    """NVIDIA Dynamo's worker (``python -m dynamo.sglang`` / ``dynamo.trtllm``) or frontend parser, built as
    its ``parse_args`` builds it (the dynamo.sglang one includes the pinned SGLang's own flags)."""
    from importlib.metadata import version
    # dynamo.sglang parses its own flags first and hands the rest to SGLang's parser: where a flag is both,
    # Dynamo's wins (added last, conflicts resolved in its favour)
    p = argparse.ArgumentParser(conflict_handler="resolve")
    if worker == "sglang":
        from dynamo.sglang.args import add_sglang_cli_compat
        from sglang.srt.server_args import ServerArgs
        ServerArgs.add_cli_args(p)
        add_sglang_cli_compat(p)
    if worker == "frontend":
        from dynamo.frontend.frontend_args import FrontendArgGroup
        FrontendArgGroup().add_arguments(p)
        return p, version("ai-dynamo"), "dynamo.frontend (FrontendArgGroup): python -m dynamo.frontend"
    from dynamo.common.configuration.groups.router_args import register_worker_router_help
    from dynamo.common.configuration.groups.runtime_args import DynamoRuntimeArgGroup
    DynamoRuntimeArgGroup().add_arguments(p)
    if worker == "trtllm":
        from dynamo.trtllm.backend_args import DynamoTrtllmArgGroup
        DynamoTrtllmArgGroup().add_arguments(p)
    else:
        import sglang
        from dynamo.sglang.args import DynamoSGLangArgGroup
        DynamoSGLangArgGroup().add_arguments(p)
        worker = f"sglang (with SGLang {sglang.__version__}'s ServerArgs)"
    register_worker_router_help(p)
    return p, version("ai-dynamo"), f"python -m dynamo.{worker}: the parser dynamo's parse_args builds"


ENGINES = {"sglang": _sglang, "vllm": _vllm, "dynamo-sglang": lambda: _dynamo("sglang"),
           "dynamo-trtllm": lambda: _dynamo("trtllm"), "dynamo-frontend": lambda: _dynamo("frontend")}
JSON_FIELDS = {"vllm": _vllm_json}
EXTRA = {"sglang": _sglang_extra, "dynamo-sglang": _sglang_extra}


def flags_of(parser: argparse.ArgumentParser) -> dict[str, dict]:
    """{option string: {value, choices, deprecated}} of every optional argument of ``parser``."""
    out = {}
    for action in parser._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        deprecated = "Deprecated" in type(action).__name__ or (action.help or "").lower().startswith("deprecated")
        choices = sorted(str(c) for c in action.choices) if action.choices is not None else None
        for opt in action.option_strings:
            out[opt] = {"value": action.nargs != 0, "choices": choices, "deprecated": deprecated}
    return dict(sorted(out.items()))


class _Anything:
    """Stands in for any attribute of a stubbed module: callable, subscriptable, usable in ``X | None``."""

    def __call__(self, *args, **kwargs):
        return args[0] if len(args) == 1 and callable(args[0]) and not kwargs else _Anything()

    def __getattr__(self, name):
        return _Anything()

    def __getitem__(self, key):
        return _Anything()

    def __mro_entries__(self, bases):
        return (object,)

    def __or__(self, other):
        return other

    __ror__ = __or__

    def __iter__(self):
        return iter(())


class _Module(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything()


class _Stub(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import the named modules (and their submodules) as empty stand-ins (what the parser never touches)."""

    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(self, name, path, target=None):
        if not any(name == n or name.startswith(n + ".") for n in self.names):
            return None
        return importlib.machinery.ModuleSpec(name, self, is_package=True)

    def create_module(self, spec):
        return _Module(spec.name)

    def exec_module(self, module):
        module.__path__ = []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("engine", choices=sorted(ENGINES))
    ap.add_argument("--stub", default="", help="comma-separated modules to stub (never used by the parser)")
    args = ap.parse_args()
    if args.stub:
        sys.meta_path.insert(0, _Stub(set(args.stub.split(","))))
    parser, version, source = ENGINES[args.engine]()
    doc = {"engine": args.engine, "version": version, "source": source, "flags": flags_of(parser)}
    if args.engine in JSON_FIELDS:  # JSON-valued flags: the keys their config classes accept
        doc["json_fields"] = JSON_FIELDS[args.engine]()
    if args.engine in EXTRA:
        doc.update(EXTRA[args.engine]())
    path = OUT / f"{args.engine}-{version}.json"
    path.write_text(json.dumps(doc, indent=0) + "\n", encoding="utf-8")
    print(f"wrote {path}: {len(doc['flags'])} option strings")


if __name__ == "__main__":
    main()
