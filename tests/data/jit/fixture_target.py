"""The program whose JIT objects make_fixture.py records (run with NUMBA_DEBUGINFO=1).

Line numbers matter: tests find lines by the ``# MARK`` comments.
"""

import json
import sys

import numpy as np
from numba import njit


@njit
def helper(x):  # HELPER_DEF
    y = x * 0.5 + 1.0  # HELPER_BODY
    return y  # HELPER_RETURN


@njit
def kernel(a):  # KERNEL_DEF
    s = 0.0
    for i in range(a.shape[0]):  # KERNEL_LOOP
        s += np.round(helper(a[i]))  # KERNEL_CALL
    return s  # KERNEL_RETURN


def facts() -> dict[str, object]:
    """What Numba itself says about the compiled functions: the ground truth for the tests."""
    out = []
    for dispatcher in (helper, kernel):
        for cres in dispatcher.overloads.values():
            name = cres.fndesc.mangled_name
            out.append(
                {
                    "mangled": name,
                    "qualname": cres.fndesc.qualname,
                    "address": cres.library.get_pointer_to_function(name),
                }
            )
    return {"functions": out}


if __name__ == "__main__":
    kernel(np.arange(100.0))
    print(json.dumps(facts()), flush=True)
    sys.stdin.read()  # stay alive (and mapped) until the recorder closes our stdin
