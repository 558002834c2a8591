"""Shared Docker fixtures and the ``docker`` marker.

A test marked ``@pytest.mark.docker`` (or using one of the fixtures below) needs a running Docker engine:

* no engine answers and ``REST_EM_REQUIRE_DOCKER`` is unset: the test is skipped, with the reason;
* ``REST_EM_REQUIRE_DOCKER=1`` (CI, ``.ci/run``): the test fails instead, so CI never passes by skipping.

``sandbox_image`` builds the sandbox image once (offline, content-hashed: a no-op when it exists);
``code_verifier`` is one warm pool of two containers shared by the session, with short time limits so
that attacks which run into a limit finish quickly.
"""

from __future__ import annotations

import functools
import os

import pytest

REQUIRE_DOCKER = os.environ.get("REST_EM_REQUIRE_DOCKER") == "1"
# Short limits keep the adversarial tests fast; honest test programs finish in milliseconds.
TEST_TIMEOUT_S = 2.0
PROBLEM_TIMEOUT_S = 6.0


@functools.lru_cache(maxsize=1)
def docker_status() -> tuple[bool, str]:
    """(engine answers, why not)."""
    try:
        import docker
    except ImportError as exc:
        return False, f"the Docker SDK is not installed ({exc}); pip install -e '.[sandbox]'"
    try:
        docker.from_env(timeout=10).ping()
    except Exception as exc:
        return False, f"no Docker engine answers ({type(exc).__name__}: {exc})"
    return True, ""


def require_docker() -> None:
    ok, why = docker_status()
    if ok:
        return
    if REQUIRE_DOCKER:
        pytest.fail(f"REST_EM_REQUIRE_DOCKER=1 but {why}", pytrace=False)
    pytest.skip(f"needs Docker: {why} (set REST_EM_REQUIRE_DOCKER=1 to make this a failure)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("docker"):
        require_docker()


@pytest.fixture(scope="session")
def docker_client():
    require_docker()
    import docker

    return docker.from_env(timeout=120)


@pytest.fixture(scope="session")
def sandbox_image(docker_client) -> str:
    from sandbox.image import ensure_image

    return ensure_image(docker_client)


@pytest.fixture(scope="session")
def code_verifier(sandbox_image):
    from verifiers.code import CodeVerifier, CodeVerifyConfig

    verifier = CodeVerifier(CodeVerifyConfig(image=sandbox_image, pool_size=2, timeout_per_test_s=TEST_TIMEOUT_S,
                                             timeout_per_problem_s=PROBLEM_TIMEOUT_S))
    yield verifier
    verifier.close()
