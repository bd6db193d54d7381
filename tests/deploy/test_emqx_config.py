"""deploy/emqx: what can be checked without an EMQX here.

No EMQX runs on the development machines or in CI (it is neither in Debian nor on PyPI), so
these files have not been loaded by EMQX itself; deploy/SCALING.md says so. What is checked:
emqx.conf parses as HOCON (pyhocon) and names the settings the page relies on, its password
hash is the one the registry stores, and acl.conf grants a cabinet exactly the topics the
Mosquitto ACL does (the one a real Mosquitto enforces in test_mosquitto_config.py).
"""

from __future__ import annotations

import re

from pyhocon import ConfigFactory

from cloud.services.registry import (
    DEFAULT_CLOUD_MQTT_USER,
    MOSQUITTO_PBKDF2_ITERATIONS,
    mosquitto_acl_lines,
    worker_mqtt_users,
)
from protocol.topics import SHARED_EVENT_SUBSCRIPTION
from tests.deploy.tools import DEPLOY

EMQX = DEPLOY / "emqx"


def test_emqx_conf_parses_and_sets_what_scaling_md_relies_on() -> None:
    conf = ConfigFactory.parse_file(str(EMQX / "emqx.conf"))
    assert conf["mqtt"]["shared_subscription_strategy"] == "hash_topic"
    # Client id = user name, as Mosquitto's use_username_as_clientid: one cabinet's password
    # cannot take another cabinet's (or a worker's) session (tests/security/test_mqtt_identity.py).
    assert conf["mqtt"]["use_username_as_clientid"] is True
    assert SHARED_EVENT_SUBSCRIPTION.startswith("$share/cloud/")  # the group the workers join
    (auth,) = conf["authentication"]
    assert (auth["backend"], auth["user_id_type"]) == ("built_in_database", "username")
    # The same PBKDF2 as the `$7$` hashes the registry keeps: they can be imported as they are.
    algorithm = auth["password_hash_algorithm"]
    assert (algorithm["name"], algorithm["mac_fun"]) == ("pbkdf2", "sha512")
    assert algorithm["iterations"] == MOSQUITTO_PBKDF2_ITERATIONS
    assert algorithm["dk_length"] == 64
    authz = conf["authorization"]
    assert authz["no_match"] == "deny"
    assert authz["sources"][0]["path"] == "etc/acl.conf"
    assert len(conf["cluster"]["static"]["seeds"]) >= 2


# {allow|deny, WHO, ACTION, [TOPICS]}. with WHO `all` or `{username, {eq, "..."}}`; or {deny, all}.
RULE = re.compile(r'\{(allow|deny),(all|\{\w+,\{\w+,"[^"]*"\}\}),(\w+),\[([^\]]*)\]\}\.')
LAST = re.compile(r"\{(allow|deny),all\}\.$")


def acl_rules() -> list[tuple[str, str, str, list[str]]]:
    """(permission, who, action, topics) of each rule in acl.conf, in order."""
    code = "".join(line.split("%", 1)[0] for line in (EMQX / "acl.conf").read_text().splitlines())
    code = re.sub(r"\s+", "", code)
    rules = [
        (permission, who, action, re.findall(r'"([^"]*)"', topics))
        for permission, who, action, topics in RULE.findall(code)
    ]
    last = LAST.search(code)
    assert last, "acl.conf must end with a catch-all rule"
    assert len(rules) + 1 == code.count("}."), "acl.conf has a rule this test cannot read"
    rules.append((last.group(1), "all", "", []))
    return rules


def test_acl_conf_grants_a_cabinet_what_the_mosquitto_acl_grants() -> None:
    rules = acl_rules()
    cab = "cab-0001"
    granted = {
        (action, topic.replace("${username}", cab))
        for permission, who, action, topics in rules
        if permission == "allow" and who == "all"
        for topic in topics
    }
    mosquitto = set()
    for line in mosquitto_acl_lines(cab).splitlines()[1:]:
        _, access, topic = line.split()
        mosquitto.add(({"write": "publish", "read": "subscribe"}[access], topic))
    assert granted == mosquitto
    cloud = [r for r in rules if DEFAULT_CLOUD_MQTT_USER in r[1]]
    assert cloud == [("allow", '{username,{re,"^locker-cloud-[0-9]+$"}}', "all", ["lockers/v1/#"])]
    # The pattern covers every worker user the registry makes, and no cabinet.
    pattern = re.compile(re.findall(r'"([^"]*)"', cloud[0][1])[0])
    assert all(pattern.search(user) for user in worker_mqtt_users(workers=12))
    assert not any(pattern.search(name) for name in (cab, "locker-cloud", "locker-cloud-x"))
    assert rules[-1][:2] == ("deny", "all")
