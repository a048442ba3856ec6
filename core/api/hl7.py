"""HL7 v2 over HTTP, for integration engines that post rather than speak MLLP; the stored
messages; and the HIS department codes HL7 intake maps."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field

from suifang.core.api.deps import RuntimeDep
from suifang.core.api.security import PrincipalDep, audit_patients, require
from suifang.core.db import in_thread
from suifang.core.models import Hl7Message
from suifang.core.security.auth import Permission
from suifang.workflows.hl7_intake import (
    Hl7Receipt,
    department_map,
    list_messages,
    map_department,
    receive,
    reprocess,
    unmap_department,
)

router = APIRouter(tags=["hl7"])
CanIntake = Depends(require(Permission.INTAKE_WRITE))
CanReadMessages = Depends(require(Permission.HL7_READ))
CanReadMapping = Depends(require(Permission.ROUTING_READ))
CanWriteMapping = Depends(require(Permission.ROUTING_WRITE))

HOSPITAL_WIDE = "HL7 intake is hospital-wide: use a token with no department scope"
HL7_MEDIA_TYPES = ("application/hl7-v2", "x-application/hl7-v2+er7", "text/plain")
_ACK = {
    "content": {"application/hl7-v2": {"schema": {"type": "string"}}},
    "description": (
        "The HL7 ACK (ER7): MSA-1 AA processed, AE content error (ERR names segment and "
        "field), AR not taken. Also in the X-HL7-Ack-Code header."
    ),
}
_SAMPLE = (
    "MSH|^~\\&|HIS|HOSP|SUIFANG|HOSP|20261201100000||ADT^A03|MSG0001|P|2.5|||||CHN|UNICODE UTF-8\r"
    "PID|1||MRN0001^^^HOSP^MR||张^伟||19580312|M|||||13800138000\r"
    "PV1|1|I|XNK^12^3||||D01^李^明|||XNK|||||||||V0001|||||||||||||||||||||||||"
    "20261125083000|20261201100000\r"
    "DG1|1||I21.9^急性心肌梗死^I10\r"
    "PR1|1||36.06^经皮冠状动脉支架置入术^ICD9CM3\r"
)


class Hl7MessageView(BaseModel):
    id: int
    received_at: dt.datetime
    sender: str = Field(description="MSH-3^MSH-4")
    control_id: str = Field(description="MSH-10")
    message_type: str
    encoding: str
    transport: Literal["mllp", "http"]
    status: str = Field(description="received, processing, processed, error or rejected")
    ack_code: str | None
    error: str | None
    patient_id: int | None
    enrollment_id: int | None
    attempts: int

    @classmethod
    def of(cls, row: Hl7Message) -> Hl7MessageView:
        return cls.model_validate(row, from_attributes=True)


class DepartmentMapping(BaseModel):
    department: str = Field(min_length=1, max_length=64, description="A suifang department code")


_MAPPING_EXAMPLES = {
    "cardiology": {
        "summary": "XNK (心内科) is cardiology",
        "value": {"department": "cardiology"},
    }
}


class DepartmentMappingChange(BaseModel):
    his_code: str
    department: str | None
    previous: str | None


def _ack_response(receipt: Hl7Receipt) -> Response:
    return Response(
        content=receipt.ack_bytes,
        media_type=f"application/hl7-v2; charset={receipt.encoding}",
        headers={"X-HL7-Ack-Code": receipt.code},
    )


@router.post(
    "/intake/hl7v2",
    summary="Receive one HL7 v2 message (ADT) posted over HTTP; answers its ACK",
    responses={200: _ACK},
    response_class=Response,
    dependencies=[CanIntake],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/hl7-v2": {"schema": {"type": "string"}, "example": _SAMPLE},
                "text/plain": {"schema": {"type": "string"}},
            },
            "description": "The ER7 message, in the charset its MSH-18 declares.",
        }
    },
)
async def post_hl7v2(request: Request, runtime: RuntimeDep, principal: PrincipalDep) -> Response:
    """Exactly what the MLLP listener does with a frame: stored encrypted first, idempotent by
    sender and MSH-10 (a resend gets the same ACK and no second effect), then acted on.

    The answer is always 200 with the ACK: an integration engine reads MSA-1, not the status.
    A hospital-wide feed: a token scoped to departments may not post it.

    中文：通过 HTTP 接收一条 HL7 v2（ADT）消息，处理方式与 MLLP 监听相同：先加密保存，按发送方与
    MSH-10 幂等，再执行；始终返回 200 和 ACK（读取 MSA-1）。仅限不限科室的令牌。
    """
    if principal.scope is not None:
        raise HTTPException(
            403, "HL7 intake is hospital-wide: use a token with no department scope"
        )
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type not in HL7_MEDIA_TYPES:
        raise HTTPException(
            415,
            "an HL7 v2 message is sent as Content-Type: application/hl7-v2, "
            f"not {media_type or 'no type'!r}",
        )
    body = await request.body()
    if not body.strip():
        raise HTTPException(422, "body: empty; send one HL7 v2 message beginning with MSH")
    receipt = await receive(runtime, body, transport="http")
    audit_patients(request, receipt.patient_id)
    return _ack_response(receipt)


@router.get(
    "/hl7/messages",
    response_model=list[Hl7MessageView],
    summary="Stored HL7 messages, newest first",
    dependencies=[CanReadMessages],
)
def get_messages(
    request: Request,
    runtime: RuntimeDep,
    status: Annotated[
        Literal["received", "processing", "processed", "error", "rejected"] | None, Query()
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[Hl7MessageView]:
    """What arrived, when, from whom, what was done and the ACK code; never the raw message
    (it stays encrypted; `suifang hl7 reprocess` acts on it again).

    中文：已接收的 HL7 消息（最新在前）：接收时间、发送方、处理结果和 ACK 代码；不返回原始消息
    （加密保存）。
    """
    rows = list_messages(runtime, status=status, limit=limit)
    audit_patients(request, *(row.patient_id for row in rows))
    return [Hl7MessageView.of(row) for row in rows]


@router.post(
    "/hl7/messages/{message_id}/reprocess",
    summary="Act on a stored HL7 message again (after a mapping fix); answers the new ACK",
    responses={200: _ACK},
    response_class=Response,
    dependencies=[CanIntake],
)
async def reprocess_message(
    message_id: int, runtime: RuntimeDep, principal: PrincipalDep
) -> Response:
    """Act on a stored message again, e.g. after mapping its HIS department code; its new
    ACK replaces the old and is the answer. 404 for an unknown message, 503 while it is
    being processed; a token scoped to departments may not call it.

    中文：重新处理一条已保存的 HL7 消息（如补充科室映射后），返回并替换为新的 ACK；
    消息不存在返回 404，正在处理中返回 503。仅限不限科室的令牌。
    """
    if principal.scope is not None:
        raise HTTPException(
            403, "HL7 intake is hospital-wide: use a token with no department scope"
        )
    return _ack_response(await reprocess(runtime, message_id))


@router.get(
    "/departments/his-codes",
    response_model=dict[str, str],
    summary="HIS department codes and the suifang departments they map to",
    dependencies=[CanReadMapping],
)
def get_department_map(runtime: RuntimeDep) -> dict[str, str]:
    """The table HL7 and FHIR intake read a HIS department code through: HIS code → suifang
    department code, e.g. ``{"XNK": "cardiology"}``.

    中文：HIS 科室代码与 suifang 科室的映射表（如 XNK → cardiology），
    HL7 与 FHIR 接入据此识别科室。
    """
    return department_map(runtime)


@router.put(
    "/departments/his-codes/{his_code}",
    response_model=DepartmentMappingChange,
    summary="Map a HIS department code to a suifang department",
    dependencies=[CanWriteMapping],
)
async def put_department_mapping(
    his_code: str,
    body: Annotated[DepartmentMapping, Body(openapi_examples=_MAPPING_EXAMPLES)],
    runtime: RuntimeDep,
    request: Request,
) -> DepartmentMappingChange:
    """HL7 intake reads PV1-10 (else PV1-3.1) through this table; an unmapped code gets AE.
    Answers the mapping before and after; 422 for an unknown suifang department.

    中文：将 HIS 科室代码映射到 suifang 科室（HL7 读取 PV1-10，否则 PV1-3.1；未映射的代码回 AE），
    返回修改前后的映射；科室不存在时返回 422。
    """
    before, now = await in_thread(map_department, runtime, his_code, body.department)
    request.state.audit_detail = {"from": before, "to": now}
    return DepartmentMappingChange(his_code=his_code, department=now, previous=before)


@router.delete(
    "/departments/his-codes/{his_code}",
    response_model=DepartmentMappingChange,
    summary="Remove a HIS department code's mapping",
    dependencies=[CanWriteMapping],
)
async def delete_department_mapping(
    his_code: str, runtime: RuntimeDep, request: Request
) -> DepartmentMappingChange:
    """Remove a HIS department code's mapping: HL7 messages naming it get AE from then on.
    404 if the code is not mapped.

    中文：删除一个 HIS 科室代码的映射，此后含该代码的 HL7 消息将回 AE；代码未映射时返回 404。
    """
    before = await in_thread(unmap_department, runtime, his_code)
    request.state.audit_detail = {"from": before, "to": None}
    return DepartmentMappingChange(his_code=his_code, department=None, previous=before)
