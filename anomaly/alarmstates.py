"""ISA-18.2 alarm states and their transitions, as one pure table (no I/O, no clock).

An alarm has a *state* (what the operator sees and must do) and, separately, whether its
*condition* is true now (`active`): a shelved or suppressed alarm still tracks its condition so
that it comes back annunciated if the condition still holds when the shelf expires.

    normal ──raise──▶ unack ──ack──▶ ack ──clear──▶ normal
                       │                  ▲
                     clear              raise (stays ack)
                       ▼
                   rtn_unack ──ack──▶ normal;   rtn_unack ──raise──▶ unack

Shelve / suppress / remove from service take any alarm out of annunciation; unshelving (by hand or
by expiry), unsuppressing and returning to service bring it back as `unack` when its condition is
true now and as `normal` otherwise.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from gridverse.schema import Severity

__all__ = [
    "ANNUNCIATED",
    "Event",
    "InvalidTransition",
    "Priority",
    "State",
    "Status",
    "priority_of",
    "transition",
]


class State(StrEnum):
    """ISA-18.2 alarm states."""

    NORMAL = "normal"
    UNACK = "unack"  # active, unacknowledged
    ACK = "ack"  # active, acknowledged
    RTN_UNACK = "rtn_unack"  # returned to normal, unacknowledged
    SHELVED = "shelved"  # taken out of annunciation by an operator, with a reason and an expiry
    SUPPRESSED = "suppressed"  # by design: its breaker is open, its device out of service
    OUT_OF_SERVICE = "out_of_service"  # removed for maintenance


class Event(StrEnum):
    RAISE = "raise"  # the condition became true
    CLEAR = "clear"  # the condition became false
    ACK = "ack"
    SHELVE = "shelve"
    UNSHELVE = "unshelve"  # by hand, or the shelf expired
    SUPPRESS = "suppress"
    UNSUPPRESS = "unsuppress"
    REMOVE = "remove"  # out of service
    RETURN = "return"  # back in service


class Priority(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


#: States that ask something of the operator (shown, counted in the alarm load).
ANNUNCIATED = frozenset({State.UNACK, State.ACK, State.RTN_UNACK})

_PRIORITY = {Severity.CRITICAL: Priority.CRITICAL, Severity.WARNING: Priority.MEDIUM, Severity.INFO: Priority.LOW}


def priority_of(severity: Severity | str) -> Priority:
    """The alarm's priority from the detector's severity (critical → critical, warning → medium,
    info → low)."""
    return _PRIORITY.get(Severity(severity), Priority.MEDIUM)


class Status(NamedTuple):
    state: State
    active: bool  # the condition is true now


class InvalidTransition(ValueError):
    """An operator action that does not apply to the alarm's state (the message says why)."""


_OUT = (State.SHELVED, State.SUPPRESSED, State.OUT_OF_SERVICE)


def _back(active: bool) -> State:
    return State.UNACK if active else State.NORMAL


def transition(status: Status, event: Event) -> Status:
    """The status after `event`; raises `InvalidTransition` for an operator action that does not
    apply (acknowledging a normal alarm, unshelving one not shelved...)."""
    state, active = status
    if event is Event.RAISE:
        if state in _OUT:
            return Status(state, True)
        return Status(State.ACK if state is State.ACK else State.UNACK, True)
    if event is Event.CLEAR:
        if state in _OUT:
            return Status(state, False)
        if state is State.UNACK:
            return Status(State.RTN_UNACK, False)
        if state is State.ACK:
            return Status(State.NORMAL, False)
        return Status(state, False)  # normal, rtn_unack: already clear
    if event is Event.ACK:
        if state is State.UNACK:
            return Status(State.ACK, active)
        if state is State.RTN_UNACK:
            return Status(State.NORMAL, active)
        raise InvalidTransition(f"an alarm in state {state} has nothing to acknowledge")
    if event is Event.SHELVE:
        if state in (State.SUPPRESSED, State.OUT_OF_SERVICE):
            raise InvalidTransition(f"an alarm in state {state} cannot be shelved; return it to service first")
        return Status(State.SHELVED, active)
    if event is Event.UNSHELVE:
        if state is not State.SHELVED:
            raise InvalidTransition(f"an alarm in state {state} is not shelved")
        return Status(_back(active), active)
    if event is Event.SUPPRESS:
        if state in (State.OUT_OF_SERVICE, State.SHELVED):
            return status  # already out of annunciation; the shelf or maintenance rules
        return Status(State.SUPPRESSED, active)
    if event is Event.UNSUPPRESS:
        return Status(_back(active), active) if state is State.SUPPRESSED else status
    if event is Event.REMOVE:
        return Status(State.OUT_OF_SERVICE, active)
    if event is Event.RETURN:
        if state is not State.OUT_OF_SERVICE:
            raise InvalidTransition(f"an alarm in state {state} is in service already")
        return Status(_back(active), active)
    raise InvalidTransition(f"unknown event {event!r}")
