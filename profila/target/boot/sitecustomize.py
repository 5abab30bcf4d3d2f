"""profila's start-up hook for a profiled Python program.

profila puts this directory first on the target's ``PYTHONPATH`` (see
``profila.target.target_environment``), so ``site`` imports this file as ``sitecustomize``.
It then:

1. takes its own directory off ``sys.path`` (the program sees the ``sys.path`` of a plain run;
   ``sys.path[0]`` for a script, ``-m`` or ``-c`` is added by Python after ``site`` has run);
2. when ``PROFILA_DEBUGINFO=lines``, puts a finder first on ``sys.meta_path`` that does nothing
   until ``numba`` itself is imported, and then, once numba's ``__init__`` has run, loads
   ``profila/target/linetables.py`` and patches numba for line tables only;
3. runs the ``sitecustomize`` it shadows, if there is one, so it ends up in
   ``sys.modules["sitecustomize"]`` as in a plain run; if there is none, it leaves the import
   failing the way a missing ``sitecustomize`` does, which ``site`` ignores.

It must never break the program: anything unexpected in steps 1-2 is reported in one line on
stderr and otherwise ignored.
"""

import os
import sys

TYPE_CHECKING = False  # no typing import at start-up: it costs more than this whole module
if TYPE_CHECKING:
    from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))
_PATCH = os.path.join(os.path.dirname(_HERE), "linetables.py")
_PATCH_MODULE = "_profila_linetables"


def _say(message: str) -> None:
    try:  # noqa: SIM105 (contextlib is not worth importing at start-up)
        print(f"profila: {message}", file=sys.stderr, flush=True)
    except Exception:
        pass


def _leave_sys_path() -> None:
    """Remove the first ``sys.path`` entry naming this directory (the one profila added)."""
    here = os.path.normcase(_HERE)
    for i, entry in enumerate(sys.path):
        if entry and os.path.normcase(os.path.abspath(entry)) == here:
            del sys.path[i]
            sys.path_importer_cache.pop(entry, None)
            return


def _apply_patch() -> None:
    """numba has just been imported: load profila's patch by path and apply it."""
    try:
        import importlib.util

        module = sys.modules.get(_PATCH_MODULE)
        if module is None:
            spec = importlib.util.spec_from_file_location(_PATCH_MODULE, _PATCH)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {_PATCH}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[_PATCH_MODULE] = module
            spec.loader.exec_module(module)
        module.apply()
    except Exception as exc:
        version = str(getattr(sys.modules.get("numba"), "__version__", "?"))
        _say(
            f"line info unavailable for numba {'.'.join(version.split('.')[:2])} "
            f"({type(exc).__name__}: {exc})"
        )


class NumbaWatcher:
    """A meta-path finder that lets every import through and, when ``numba`` is imported,
    arranges for :func:`_apply_patch` to run right after numba's ``__init__``."""

    def find_spec(self, fullname: str, path: "Any" = None, target: "Any" = None) -> "Any":
        if fullname != "numba":
            return None
        try:
            return self._watch(fullname, path, target)
        except Exception:
            return None  # let the import system find numba the usual way

    def _watch(self, fullname: str, path: "Any", target: "Any") -> "Any":
        finders = sys.meta_path[sys.meta_path.index(self) + 1 :]
        for finder in finders:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        exec_module = getattr(loader, "exec_module", None)
        if exec_module is None:
            return spec
        watcher = self

        def exec_then_patch(module: "Any") -> None:
            if vars(loader).get("exec_module") is exec_then_patch:
                del loader.exec_module  # back to the loader's own method
            exec_module(module)
            if module.__name__ == fullname:
                if watcher in sys.meta_path:
                    sys.meta_path.remove(watcher)
                _apply_patch()

        loader.exec_module = exec_then_patch
        return spec


def _install() -> None:
    if os.environ.get("PROFILA_DEBUGINFO") != "lines":
        return
    if "numba" in sys.modules:  # imported before us (a .pth file): patch now
        _apply_patch()
    else:
        sys.meta_path.insert(0, NumbaWatcher())


def _chain() -> None:
    """Import the ``sitecustomize`` this one shadows, in our place."""
    import importlib

    sys.modules.pop("sitecustomize", None)
    try:
        importlib.import_module("sitecustomize")
    except ModuleNotFoundError as exc:
        if exc.name != "sitecustomize":
            raise
        # Tell site.py, silently, that there is no sitecustomize (as in a plain run); the
        # import system also forgets this module, as if it had never been found.
        raise ModuleNotFoundError("No module named 'sitecustomize'", name="sitecustomize") from None


if __name__ == "sitecustomize":
    try:
        _leave_sys_path()
        _install()
    except Exception as _exc:
        _say(f"start-up hook failed ({type(_exc).__name__}: {_exc})")
    _chain()
