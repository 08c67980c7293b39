"""Which process owns unfinished work, and when it is certainly gone: dead only when this machine can tell."""

from __future__ import annotations

import dataclasses

import pytest

from _processes import dead_owner
from keel._process import ProcessOwner


def test_this_process_is_alive_and_its_record_round_trips() -> None:
    me = ProcessOwner.current()

    assert not me.is_dead()
    assert ProcessOwner.from_dict(me.to_dict()) == me


def test_a_process_that_ended_is_dead() -> None:
    gone = ProcessOwner.from_dict(dead_owner())

    assert gone is not None and gone.is_dead()


@pytest.mark.skipif(ProcessOwner.current().started is None, reason="no /proc: process start times are unknown")
def test_a_reused_process_id_is_not_mistaken_for_its_first_owner() -> None:
    me = ProcessOwner.current()
    assert me.started is not None

    assert dataclasses.replace(me, started=me.started - 1).is_dead()


def test_processes_this_machine_cannot_see_are_never_called_dead() -> None:
    gone = ProcessOwner.from_dict(dead_owner())
    assert gone is not None

    assert not dataclasses.replace(gone, host=gone.host + "-elsewhere").is_dead()
    assert not dataclasses.replace(gone, namespace="pid:[1]").is_dead()  # another container
    assert not dataclasses.replace(gone, boot="another-boot", machine="another-machine").is_dead()


@pytest.mark.skipif(ProcessOwner.current().boot is None, reason="no boot id on this platform")
def test_a_process_from_before_this_machine_restarted_is_dead() -> None:
    me = ProcessOwner.current()
    if me.machine is None:
        pytest.skip("no machine id (/etc/machine-id) to tell a restart from another machine")

    assert dataclasses.replace(me, boot="an-earlier-boot").is_dead()


@pytest.mark.parametrize("record", [None, "pid 4", {}, {"host": "h"}, {"host": "h", "pid": "4"}, {"host": 1, "pid": 4}])
def test_an_unreadable_record_gives_no_owner(record: object) -> None:
    assert ProcessOwner.from_dict(record) is None
