"""The registry's shared options: every domain takes ``timeout_s`` and ``workers`` (the loop relies on it)."""

from __future__ import annotations

import pytest

from verifiers.registry import get_verifier


@pytest.mark.parametrize("domain", ["math", "code"])
def test_every_domain_accepts_the_shared_options(domain: str) -> None:
    # Constructing a verifier starts no workers or containers: this runs without Docker.
    verifier = get_verifier(domain, timeout_s=3.0, workers=1)
    try:
        assert verifier.domain == domain
    finally:
        verifier.close()


def test_code_shared_options_map_to_its_config() -> None:
    verifier = get_verifier("code", timeout_s=3.0, workers=1)
    try:
        assert verifier.config.timeout_per_test_s == 3.0
        assert verifier.config.pool_size == 1
    finally:
        verifier.close()


def test_unknown_domain_names_the_choices() -> None:
    with pytest.raises(ValueError, match="code, custom, math"):
        get_verifier("chess")


def test_unknown_option_is_an_error_with_a_hint() -> None:
    with pytest.raises(ValueError, match="did you mean"):
        get_verifier("code", timeout_per_tset_s=1.0)
