"""The access rules of ``maskingnet serve`` on their own (the live server's tests are in test_serve.py)."""

from __future__ import annotations

import pytest

from maskingnet.serve import ServeConfig
from maskingnet.serve.access import AccessOptions, HostAllowList, access_line, host_name, key_matches


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("localhost:8000", "localhost"),
        ("[::1]:8000", "::1"),
        ("[::1]", "::1"),
        ("Cars.Example.", "cars.example"),
        ("127.0.0.1", "127.0.0.1"),
    ],
)
def test_host_name_drops_port_brackets_case_and_trailing_dot(header, name):
    assert host_name(header) == name


def test_the_default_allow_list_is_the_loopback_names_and_the_bound_address():
    allow = HostAllowList("192.168.0.7")
    assert [
        allow.allows(h) for h in ("localhost:1", "127.0.0.1", "[::1]:2", "192.168.0.7:3", "evil.example")
    ] == [True, True, True, True, False]


def test_a_wildcard_bind_adds_no_host():
    assert not HostAllowList("0.0.0.0").allows("0.0.0.0:8000")


def test_a_missing_host_header_is_refused():
    assert not HostAllowList("127.0.0.1").allows(None)


def test_a_star_dot_entry_allows_subdomains_only():
    allow = HostAllowList("127.0.0.1", ["*.cars.example"])
    assert (allow.allows("api.cars.example"), allow.allows("cars.example")) == (True, False)


def test_a_star_allows_every_host():
    assert HostAllowList("127.0.0.1", ["*"]).allows("anything.example")


def test_key_matches_only_the_exact_key():
    assert [key_matches("k3y", given) for given in ("k3y", "k3y ", "K3Y", "", None)] == [
        True,
        False,
        False,
        False,
        False,
    ]


def test_the_key_stays_out_of_the_configs_repr():
    config = ServeConfig(model="m.safetensors", api_key="hunter2")
    assert "hunter2" not in repr(config) and "hunter2" not in repr(config.access_options())


def test_access_options_survive_the_json_that_worker_processes_read():
    config = ServeConfig(
        model="m.safetensors",
        allowed_hosts=("a.example",),
        cors_origins=("https://b",),
        api_key="k",
        access_log="-",
    )
    assert ServeConfig.from_json(config.to_json()).access_options() == config.access_options()


def test_an_access_line_has_client_request_status_bytes_and_duration():
    scope = {
        "client": ("127.0.0.1", 5000),
        "method": "POST",
        "path": "/v1/mask",
        "query_string": b"threshold=0.4",
        "http_version": "1.1",
    }
    line = access_line(scope, 200, 1234, 0.0523)
    assert line.startswith("127.0.0.1 - - [")
    assert line.endswith('] "POST /v1/mask?threshold=0.4 HTTP/1.1" 200 1234 52ms')


def test_access_options_default_to_no_key_no_cors_no_log():
    assert AccessOptions() == AccessOptions("127.0.0.1", (), None, (), None)
