"""In a notebook, `del model` frees the model although the Out cache holds its Results and the
extension has completed its sites; the Result still shows, and a click-through says the model
is gone unless the sweep kept the answer."""

import gc
from dataclasses import replace

import pytest

import nbvene as nv
from nbvene.widgets.heatmap import cell_detail


def test_del_model_frees_it_in_a_notebook(shell, cell):
    made = cell(
        "import weakref, nbvene as nv\n"
        'big, big_tok = nv.models.tiny("llama")\n'
        "gone = weakref.ref(big)"
    )
    assert made.error is None
    ran = cell(
        f"%%intervene big -t big_tok\n"
        f'base: "{shell.user_ns["BASE"]}"\nsource: "{shell.user_ns["SOURCE"]}"\n'
        "patch: block_output layer=* pos=-1\n"
        'metric: p(" Paris")'
    )
    assert ran.error is None and isinstance(ran.value, nv.Result)  # now in the Out cache
    intervene = shell.magics_manager.registry["Intervene"]
    assert intervene.sites_of(shell.user_ns["big"]).n_layers == 2  # completion looked at it
    assert cell("del big, big_tok").error is None
    gc.collect()
    assert shell.user_ns["gone"]() is None
    res = ran.value
    assert res.to_svg().startswith("<svg") and "Result(p(' Paris')" in repr(res)
    assert cell_detail(res, (0,))["patched"]["top"]  # from the top tokens the sweep kept
    with pytest.raises(nv.NbveneError, match="has been deleted"):
        cell_detail(replace(res, top=None), (0,))  # a re-run needs the model
