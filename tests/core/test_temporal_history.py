"""`suifang temporal history` finds every payload in a history event, under the protobuf
versions the SDK allows (protobuf 7 removed ``FieldDescriptor.label``: it used to crash)."""

from __future__ import annotations

from google.protobuf import __version__ as protobuf_version
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import HistoryEvent

from suifang.core.cli.security import _payload_fields


def test_payloads_are_found_in_plain_repeated_and_map_fields() -> None:
    started = HistoryEvent()
    started.workflow_execution_started_event_attributes.input.payloads.append(
        Payload(data=b'{"plan": 1}')
    )
    marker = HistoryEvent()
    details = marker.marker_recorded_event_attributes.details  # map<string, Payloads>
    details["patch"].payloads.append(Payload(data=b'"a"'))
    details["version"].payloads.append(Payload(data=b'"b"'))

    assert [p.payloads[0].data for p in _payload_fields(started)] == [b'{"plan": 1}']  # type: ignore[attr-defined]
    found = sorted(p.payloads[0].data for p in _payload_fields(marker))  # type: ignore[attr-defined]
    assert found == [b'"a"', b'"b"'], protobuf_version
