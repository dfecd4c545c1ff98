"""A kubeconfig that cannot be loaded stops the start in one line naming the setting and the
file, quoting none of it (``receiver/kube_credentials.py``): kubernetes_asyncio's own errors
were a traceback, and an exec plugin's message carried that program's output."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.config import ConfigError, load_settings
from receiver.kube_credentials import check_kubeconfig_named, load_kube_configuration
from tests.support.config import write

_CLUSTER = """\
apiVersion: v1
kind: Config
current-context: x
contexts:
- name: x
  context: {cluster: c, user: u}
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:1"}
users:
- name: u
"""


@pytest.mark.parametrize(
    ("text", "why"),
    [
        # An unterminated quote: PyYAML's message shows the line it stopped at.
        (_CLUSTER + '  user:\n    token: "kube-token-qzxk\n', "it is not YAML (found unexpected"),
        # A token file named where the kubeconfig goes: YAML reads it as a string.
        ("kube-token-qzxk\n", "it is not a kubeconfig kubernetes_asyncio can read (TypeError"),
        (
            "apiVersion: v1\nusers:\n- name: u\n  user: {token: kube-token-qzxk}\n",
            "Invalid kube-config file. Expected key current-context",
        ),
        (
            _CLUSTER + "  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n"
            "      command: /bin/sh\n"
            "      args: ['-c', 'echo kube-token-qzxk >&2; exit 1']\n",
            "its exec credential plugin failed (exec: process returned 1; its output is not shown",
        ),
    ],
)
async def test_a_kubeconfig_that_cannot_be_loaded_is_named_not_quoted(
    tmp_path: Path, text: str, why: str
) -> None:
    kubeconfig = write(tmp_path / "kubeconfig", text)
    settings = load_settings(None, {"REMEDIATOR_KUBECONFIG": str(kubeconfig)})
    with pytest.raises(ConfigError) as caught:
        await load_kube_configuration(settings, {"REMEDIATOR_KUBECONFIG": str(kubeconfig)})
    message = caught.value.message
    assert message.startswith(
        f"kubernetes.kubeconfig (REMEDIATOR_KUBECONFIG): cannot load the kubeconfig {kubeconfig}: "
    )
    assert why in message
    assert "qzxk" not in message
    assert "\n" not in message


async def test_the_kubeconfig_variable_is_named_when_it_gave_the_file(tmp_path: Path) -> None:
    kubeconfig = write(tmp_path / "kubeconfig", "- not: a map\n")
    environ = {"KUBECONFIG": str(kubeconfig)}
    with pytest.raises(ConfigError, match=rf"^KUBECONFIG: cannot load the kubeconfig {kubeconfig}"):
        await load_kube_configuration(load_settings(None, environ), environ)


async def test_a_kubeconfig_that_loads_gives_its_server(tmp_path: Path) -> None:
    kubeconfig = write(tmp_path / "kubeconfig", _CLUSTER + "  user: {token: t}\n")
    environ = {"REMEDIATOR_KUBECONFIG": str(kubeconfig)}
    configuration = await load_kube_configuration(load_settings(None, environ), environ)
    assert configuration.host == "https://127.0.0.1:1"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        # A service account's token pasted where the path goes.
        (
            {"REMEDIATOR_KUBECONFIG": "eyJhbGciOiJSUzI1NiJ9.qzxk"},
            "kubernetes.kubeconfig (REMEDIATOR_KUBECONFIG): no kubeconfig file at (its path not"
            " shown: nothing is there, nor the directory it names, so it may be the secret"
            " itself, written where its file's path goes): give the file, or leave the setting"
            " out to run Kubernetes steps dry",
        ),
        (
            {"KUBECONFIG": "/nonexistent-qzxk/config"},
            "KUBECONFIG: no kubeconfig file at (its path not shown",
        ),
    ],
)
def test_a_kubeconfig_set_that_names_no_file_is_refused_unquoted(
    environ: dict[str, str], message: str
) -> None:
    """It ran every step dry with no word but the banner's, and the audit log's
    ``service.started`` kept the value (found by attack)."""
    with pytest.raises(ConfigError) as caught:
        check_kubeconfig_named(load_settings(None, environ), environ)
    assert caught.value.message.startswith(message)
    assert "qzxk" not in caught.value.message


def test_a_misspelt_kubeconfig_in_a_directory_that_exists_is_named(tmp_path: Path) -> None:
    environ = {"REMEDIATOR_KUBECONFIG": str(tmp_path / "kubeconfgi")}
    with pytest.raises(ConfigError, match=f"no kubeconfig file at {tmp_path / 'kubeconfgi'}: "):
        check_kubeconfig_named(load_settings(None, environ), environ)


def test_no_kubeconfig_set_is_no_error() -> None:
    check_kubeconfig_named(load_settings(None, {}), {})


@pytest.mark.parametrize("listed", ["{gone}:{real}", ":{real}", "{real}:{gone}"])
async def test_a_kubeconfig_list_takes_its_first_file_as_kubectl_does(
    tmp_path: Path, listed: str
) -> None:
    """KUBECONFIG is a list (kubectl skips missing and empty entries): its first entry alone
    was taken, and ``/gone:~/.kube/config`` stopped serve (``:~/.kube/config`` too)."""
    real = write(tmp_path / "kubeconfig", _CLUSTER + "  user: {token: t}\n")
    environ = {"KUBECONFIG": listed.format(gone=tmp_path / "gone" / "config", real=real)}
    settings = load_settings(None, environ)
    assert settings.kubeconfig == real
    check_kubeconfig_named(settings, environ)
    configuration = await load_kube_configuration(settings, environ)
    assert configuration.host == "https://127.0.0.1:1"
