"""`%%intervene --max-memory auto`: the dry run says what it chose, and the run uses it."""


def test_the_dry_run_says_what_auto_chose(cell, patch_spec):
    ran = cell("%%intervene model --dry-run --max-memory auto\n" + patch_spec)
    assert ran.error is None, ran.out
    assert "max_memory=auto: " in ran.out and " free on cpu → " in ran.out


def test_a_run_with_auto_is_the_run_without(cell, patch_spec):
    auto = cell("%%intervene model --max-memory auto\n" + patch_spec)
    plain = cell("%%intervene model\n" + patch_spec)
    assert auto.error is None, auto.out
    assert auto.value.values.tolist() == plain.value.values.tolist()
