"""HL7 v2 messages: decode, parse, map to intake, acknowledge. Pure: no database, no Temporal.

Parsing is the ``hl7`` library's (python-hl7); this module decides what the fields mean.
Chinese HIS systems send UTF-8 or GB18030/GBK, declared in MSH-18; the segment structure is
ASCII in all of them, so MSH is read from the bytes before the message is decoded.

Every problem is a :class:`Hl7Problem` that names the segment, field and component, so the
ACK's ERR segment tells the integration engineer exactly what to fix: an AE for content we
cannot use (a missing MRN, a bad date, an unmapped department), an AR for what is not a
message we take (garbage, an unsupported event, an undecodable charset).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid
from typing import Any, Literal
from zoneinfo import ZoneInfo

import hl7
from hl7.datatypes import parse_datetime

from suifang.workflows.lab_results import ResultFields

__all__ = [
    "ADMIT_EVENTS",
    "CANCEL_EVENTS",
    "SUPPORTED_EVENTS",
    "AckCode",
    "Hl7Problem",
    "ParsedMessage",
    "Rejected",
    "acknowledgement",
    "decode",
    "parse",
]

AckCode = Literal["AA", "AE", "AR"]

DISCHARGE_EVENT = "A03"
ADMIT_EVENTS = ("A01", "A04")
UPDATE_EVENT = "A08"
CANCEL_EVENTS = ("A11", "A13")
MERGE_EVENT = "A40"
SUPPORTED_EVENTS = {
    "ADT": (DISCHARGE_EVENT, *ADMIT_EVENTS, UPDATE_EVENT, *CANCEL_EVENTS, MERGE_EVENT),
    "ORU": ("R01",),
}

# MSH-18 values seen from Chinese HIS vendors, and HL7 table 0211's names for them.
_CHARSETS = {
    "": "utf-8",
    "ASCII": "ascii",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "UTF8": "utf-8",
    "UNICODE": "utf-8",
    "8859/1": "latin-1",
    "GB 18030-2000": "gb18030",
    "GB18030": "gb18030",
    "GB 18030": "gb18030",
    "GBK": "gbk",
    "GB2312": "gb18030",  # GB18030 is a superset: decodes every GB2312 and GBK byte sequence
    "GB 2312": "gb18030",
    "CNS 11643-1992": "big5",
    "BIG5": "big5",
}

_ERROR_CODES = {
    100: "Segment sequence error",
    101: "Required field missing",
    102: "Data type error",
    103: "Table value not found",
    200: "Unsupported message type",
    201: "Unsupported event code",
    203: "Unsupported version id",
    204: "Unknown key identifier",
    207: "Application internal error",
}


class Hl7Problem(Exception):
    """Content we cannot use, named by where it is (HL7 table 0357 for the code)."""

    def __init__(
        self, segment: str, field: int, reason: str, component: int | None = None, code: int = 102
    ) -> None:
        super().__init__(reason)
        self.segment = segment
        self.field = field
        self.reason = reason
        self.component = component
        self.code = code

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}"

    @property
    def location(self) -> str:
        place = f"{self.segment}-{self.field}" if self.field else self.segment
        return f"{place}.{self.component}" if self.component else place


class Rejected(Exception):
    """Not a message we take (AR): garbage, an unsupported event, an unknown charset."""

    def __init__(self, reason: str, *, code: int = 207, header: MessageHeader | None = None):
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.header = header


@dataclasses.dataclass(frozen=True)
class MessageHeader:
    """MSH as read from the raw bytes, before decoding: enough to answer any message."""

    field_separator: str
    encoding_characters: str
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    message_type: str
    control_id: str
    processing_id: str
    version: str
    charset: str
    """MSH-18 as sent ('' when absent)."""

    @property
    def sender(self) -> str:
        return f"{self.sending_application}^{self.sending_facility}"

    @property
    def codec(self) -> str:
        return _CHARSETS.get(self.charset.upper().strip(), "")


def read_header(raw: bytes) -> MessageHeader:
    """MSH from the raw bytes: its structure is ASCII whatever the message's charset."""
    text = raw.lstrip(b"\x0b\r\n \t").decode("latin-1")
    if not text.startswith("MSH") or len(text) < 8:
        raise Rejected("not an HL7 v2 message: it must begin with an MSH segment", code=100)
    separator = text[3]
    if separator.isalnum() or separator.isspace():
        raise Rejected(f"MSH-1: {separator!r} is not a field separator", code=100)
    first = re.split(r"\r\n|\r|\n", text, maxsplit=1)[0]
    fields = first.split(separator)

    # fields[0] is "MSH" and MSH-1 is the separator itself: MSH-n is fields[n - 1].
    def field(n: int) -> str:
        return fields[n - 1] if len(fields) >= n else ""

    encoding_characters = field(2)
    if len(encoding_characters) < 3:
        raise Rejected("MSH-2: the encoding characters (^~\\&) are missing", code=100)
    component = encoding_characters[0]
    charset = field(18).split(encoding_characters[1])[0].split(component)[0]
    return MessageHeader(
        field_separator=separator,
        encoding_characters=encoding_characters,
        sending_application=field(3).split(component)[0],
        sending_facility=field(4).split(component)[0],
        receiving_application=field(5).split(component)[0],
        receiving_facility=field(6).split(component)[0],
        message_type="^".join(field(9).split(component)[:2]),
        control_id=field(10).split(component)[0],
        processing_id=field(11).split(component)[0],
        version=field(12).split(component)[0],
        charset=charset,
    )


def decode(raw: bytes) -> tuple[MessageHeader, str]:
    """The header and the message as text, decoded in the charset MSH-18 declares, with
    segments separated by CR (some engines send LF or CRLF)."""
    header = read_header(raw)
    if not header.codec:
        raise Rejected(
            f"MSH-18: unsupported character set {header.charset!r} "
            "(send UNICODE UTF-8 or GB 18030-2000)",
            code=207,
            header=header,
        )
    try:
        text = raw.strip(b"\x0b\x1c\r\n \t").decode(header.codec)
    except UnicodeDecodeError as exc:
        raise Rejected(
            f"MSH-18: the message is not valid {header.charset or 'UTF-8'} "
            f"(byte {exc.start}); declare its character set in MSH-18",
            code=207,
            header=header,
        ) from None
    return header, re.sub(r"\r\n|\n", "\r", text)


# --------------------------------------------------------------------------- the content


@dataclasses.dataclass(frozen=True)
class PatientFields:
    mrn: str
    name: str
    sex: str | None
    birth_date: dt.date | None
    phone: str | None
    id_number: str | None
    address: str | None


@dataclasses.dataclass(frozen=True)
class VisitFields:
    visit_number: str | None
    patient_class: str
    department_code: str | None
    """The HIS code (PV1-10, else PV1-3.1), before mapping to a suifang department."""
    department_field: str
    ward: str | None
    attending_doctor: str | None
    admitted_at: dt.datetime | None
    discharged_at: dt.datetime | None
    diagnosis_codes: list[str]
    diagnosis_text: str | None
    procedure_codes: list[str]
    procedure_text: str | None
    discharge_disposition: str | None


@dataclasses.dataclass(frozen=True)
class ParsedMessage:
    header: MessageHeader
    event: str
    """ADT trigger (A03, …) or R01."""
    patient: PatientFields
    visit: VisitFields | None
    prior_mrn: str | None
    """A40: MRG-1, the MRN being merged away."""
    results: list[ResultFields]
    order_number: str | None = None
    """ORU: OBR-3 (filler order number), else OBR-2 (placer): the report's id."""
    result_time: dt.datetime | None = None
    """ORU: OBR-7, when the specimen was taken or the exam done."""


_SEX = {"M": "male", "F": "female", "O": "other", "U": "unknown", "A": "other", "N": "unknown"}
_PATIENT_CLASS = {"I": "inpatient", "O": "outpatient", "E": "outpatient", "P": "outpatient"}
"""PV1-2 (table 0004). Only I is an inpatient stay: an emergency (E) or pre-admit (P) visit is
no readmission; a missing or unknown class is '' (an A03 is then taken as inpatient)."""
_PHONE = re.compile(r"^\+?[0-9][0-9 \-]{5,19}$")
_DTM = re.compile(r"^\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,4})?)?)?)?)?)?([+-]\d{4})?$")
_ID_NUMBER = re.compile(r"^[0-9]{17}[0-9Xx]$")


def parse(raw: bytes, *, timezone: str) -> ParsedMessage:
    """Decode and parse ``raw``; HL7 times without an offset are the hospital's (``timezone``).

    Raises :class:`Rejected` (AR) or :class:`Hl7Problem` (AE).
    """
    header, text = decode(raw)
    try:
        message = hl7.parse(text)
        message.segment("MSH")
    except Exception as exc:  # noqa: BLE001 -- the library raises many kinds on garbage
        raise Rejected(f"cannot parse the message: {exc}", code=100, header=header) from None
    kind, _, event = header.message_type.partition("^")
    if kind not in SUPPORTED_EVENTS:
        taken = ", ".join(f"{k} {e}" for k, events in SUPPORTED_EVENTS.items() for e in events)
        raise Rejected(
            f"MSH-9: message type {kind or '(none)'!r} is not taken (supported: {taken})",
            code=200,
            header=header,
        )
    if event not in SUPPORTED_EVENTS[kind]:
        raise Rejected(
            f"MSH-9.2: {kind} event {event or '(none)'} is not taken "
            f"(supported: {', '.join(SUPPORTED_EVENTS[kind])})",
            code=201,
            header=header,
        )
    if not header.control_id:
        raise Hl7Problem("MSH", 10, "message control id missing", code=101)
    reader = _Reader(message, ZoneInfo(timezone))
    if len(reader.segments("PID")) > 1:
        raise Hl7Problem(
            "PID", 0, "more than one patient in one message; send one patient per message"
        )
    patient = reader.patient()
    visit = reader.visit() if reader.has("PV1") else None
    if event == DISCHARGE_EVENT and visit is None:
        raise Hl7Problem("PV1", 0, "segment missing: a discharge needs the visit", code=101)
    prior = reader.text("MRG", 1, 1) if event == MERGE_EVENT else None
    if event == MERGE_EVENT and not prior:
        raise Hl7Problem("MRG", 1, "prior patient identifier missing", code=101, component=1)
    if kind != "ORU":
        return ParsedMessage(header, event, patient, visit, prior, [])
    order = reader.text("OBR", 3) or reader.text("OBR", 2) or None
    if order and len(order) > 60:
        raise Hl7Problem("OBR", 3, "order number longer than 60 characters")
    return ParsedMessage(
        header,
        event,
        patient,
        visit,
        None,
        reader.results(),
        order_number=order,
        result_time=reader.when("OBR", 7),
    )


class _Reader:
    """Field access that names the field in every complaint."""

    def __init__(self, message: hl7.Message, zone: ZoneInfo) -> None:
        self.message = message
        self.zone = zone

    def has(self, segment: str) -> bool:
        try:
            self.message.segment(segment)
        except KeyError:
            return False
        return True

    def segments(self, segment: str) -> list[Any]:
        try:
            return list(self.message.segments(segment))
        except KeyError:
            return []

    def text(
        self, segment: str, field: int, component: int = 1, *, source: Any = None, repeat: int = 1
    ) -> str:
        found = source if source is not None else self._segment(segment)
        try:
            value = found.extract_field(1, field, repeat, component, 1)  # unescaped
        except (IndexError, KeyError, AttributeError):
            return ""
        return str(value).strip() if value else ""

    def _segment(self, segment: str) -> Any:
        try:
            return self.message.segment(segment)
        except KeyError:
            return None

    def when(self, segment: str, field: int, *, source: Any = None) -> dt.datetime | None:
        value = self.text(segment, field, source=source)
        if not value:
            return None
        if not _DTM.match(value):  # the library also reads '2026-12-01' (as a UTC offset!)
            raise Hl7Problem(
                segment, field, f"{value!r} is not an HL7 date/time (YYYYMMDD[HHMM[SS]][+ZZZZ])"
            )
        try:
            parsed = parse_datetime(value)
        except ValueError:
            raise Hl7Problem(
                segment, field, f"{value!r} is not an HL7 date/time (YYYYMMDD[HHMM[SS]][+ZZZZ])"
            ) from None
        if parsed is None:
            return None
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=self.zone)
        return parsed.astimezone(dt.timezone(parsed.utcoffset() or dt.timedelta()))

    def patient(self) -> PatientFields:
        if not self.has("PID"):
            raise Hl7Problem("PID", 0, "segment missing", code=101)
        pid = self._segment("PID")
        mrn = self._mrn(pid)
        family, given = self.text("PID", 5, 1), self.text("PID", 5, 2)
        # Chinese names are family name then given name with no space (张 + 三 = 张三).
        name = family + given if _is_cjk(family + given) else _western(given, family)
        if not name:
            raise Hl7Problem("PID", 5, "patient name missing", code=101, component=1)
        born = self.when("PID", 7)
        if born is not None and not dt.date(1880, 1, 1) <= born.date() <= dt.date.today():
            raise Hl7Problem("PID", 7, f"birth date {born.date()} is not in the past")
        sex_code = self.text("PID", 8).upper()
        if sex_code and sex_code not in _SEX:
            raise Hl7Problem("PID", 8, f"sex {sex_code!r} is not one of M, F, O, U", code=103)
        return PatientFields(
            mrn=mrn,
            name=name,
            sex=_SEX.get(sex_code),
            birth_date=born.date() if born else None,
            phone=self._phone(),
            id_number=self._id_number(pid),
            address=self._address(),
        )

    def _mrn(self, pid: Any) -> str:
        """PID-3: the repetition typed MR (CX.5), else the first."""
        identifiers = self._repetitions("PID", 3, pid)
        chosen = next((cx for cx in identifiers if cx.get(5, "").upper() == "MR"), None)
        if chosen is None:  # never a national id (身份证号) as the MRN
            chosen = next(
                (cx for cx in identifiers if cx.get(5, "").upper() not in ("NNCHN", "NI", "SS")),
                None,
            )
        mrn = chosen.get(1, "") if chosen else ""
        if not mrn:
            raise Hl7Problem("PID", 3, "patient identifier (MRN) missing", code=101, component=1)
        if len(mrn) > 64:
            raise Hl7Problem("PID", 3, "patient identifier longer than 64 characters", component=1)
        return mrn

    def _id_number(self, pid: Any) -> str | None:
        """身份证号: a PID-3 repetition typed NNCHN or NI, else PID-19/PID-20 if shaped right."""
        for cx in self._repetitions("PID", 3, pid):
            if cx.get(5, "").upper() in ("NNCHN", "NI", "RI") and _ID_NUMBER.match(cx.get(1, "")):
                return cx[1]
        for field in (19, 20):
            value = self.text("PID", field)
            if _ID_NUMBER.match(value):
                return value
        return None

    def _repetitions(self, segment: str, field: int, source: Any) -> list[dict[int, str]]:
        found: list[dict[int, str]] = []
        for repeat in range(1, 10):
            cx = {c: self.text(segment, field, c, source=source, repeat=repeat) for c in (1, 5)}
            if not any(cx.values()):
                break
            found.append(cx)
        return found

    def _phone(self) -> str | None:
        """PID-13 (home) then PID-14 (business): XTN.1, else XTN.12 (unformatted), else area +
        local number. Never a relative's (NK1-5): messages may name findings, and a contact is
        the patient's own."""
        candidates: list[tuple[Any, str, int]] = [
            (self._segment("PID"), "PID", 13),
            (self._segment("PID"), "PID", 14),
        ]
        for source, segment, field in candidates:
            if source is None:
                continue
            for repeat in (1, 2, 3):
                parts = [
                    self.text(segment, field, c, source=source, repeat=repeat) for c in (1, 12)
                ]
                local = self.text(segment, field, 6, source=source, repeat=repeat) + self.text(
                    segment, field, 7, source=source, repeat=repeat
                )
                for value in (*parts, local):
                    value = re.sub(r"[()\s]", "", value)
                    if value and _PHONE.match(value):
                        return value
        return None

    def _address(self) -> str | None:
        parts = [self.text("PID", 11, c) for c in (4, 3, 2, 1)]  # province, city, …, street
        joined = "".join(part for part in parts if part)
        return joined[:256] or None

    def visit(self) -> VisitFields:
        pv1 = self._segment("PV1")
        department = self.text("PV1", 10, source=pv1)
        department_field = "PV1-10"
        if not department:
            department, department_field = self.text("PV1", 3, 1, source=pv1), "PV1-3.1"
        ward = "-".join(p for p in (self.text("PV1", 3, c, source=pv1) for c in (1, 2, 3)) if p)
        visit_number = self.text("PV1", 19, source=pv1) or None
        if visit_number and len(visit_number) > 64:
            raise Hl7Problem("PV1", 19, "visit number longer than 64 characters")
        admitted = self.when("PV1", 44, source=pv1)
        discharged = self.when("PV1", 45, source=pv1)
        if admitted and discharged and admitted > discharged:
            raise Hl7Problem("PV1", 45, "discharge time is before the admit time (PV1-44)")
        diagnoses = [
            (self.text("DG1", 3, 1, source=dg1), self.text("DG1", 3, 2, source=dg1))
            for dg1 in self.segments("DG1")
        ]
        procedures = [
            (self.text("PR1", 3, 1, source=pr1), self.text("PR1", 3, 2, source=pr1))
            for pr1 in self.segments("PR1")
        ]
        attending = self._doctor(pv1)
        patient_class = _PATIENT_CLASS.get(self.text("PV1", 2, source=pv1).upper(), "")
        return VisitFields(
            visit_number=visit_number,
            patient_class=patient_class,
            department_code=department or None,
            department_field=department_field,
            ward=ward[:64] or None,
            attending_doctor=attending,
            admitted_at=admitted,
            discharged_at=discharged,
            diagnosis_codes=[code for code, _ in diagnoses if code][:50],
            diagnosis_text="；".join(text for _, text in diagnoses if text)[:512] or None,
            procedure_codes=[code for code, _ in procedures if code][:50],
            procedure_text="；".join(text for _, text in procedures if text)[:512] or None,
            discharge_disposition=self.text("PV1", 36, source=pv1)[:64] or None,
        )

    def _doctor(self, pv1: Any) -> str | None:
        """PV1-7 XCN: id ^ family ^ given; the name as a Chinese reader writes it."""
        family, given = self.text("PV1", 7, 2, source=pv1), self.text("PV1", 7, 3, source=pv1)
        if family or given:
            if _is_cjk(family + given):
                return (family + given)[:128]
            return _western(given, family)[:128]
        return self.text("PV1", 7, 1, source=pv1)[:128] or None

    def results(self) -> list[ResultFields]:
        found: list[ResultFields] = []
        for obx in self.segments("OBX"):
            code = self.text("OBX", 3, 1, source=obx)
            value = self.text("OBX", 5, source=obx)
            if self.text("OBX", 2, source=obx).upper() == "SN":
                # Structured numeric: comparator ^ number. A bound (>8.2) is no reading.
                comparator = value
                number = self.text("OBX", 5, 2, source=obx)
                value = number if comparator in ("", "=") else f"{comparator}{number}"
            if not code:
                raise Hl7Problem("OBX", 3, "observation identifier missing", code=101)
            found.append(
                ResultFields(
                    code=code,
                    name=self.text("OBX", 3, 2, source=obx) or code,
                    value=value,
                    units=self.text("OBX", 6, source=obx) or None,
                    reference_range=self.text("OBX", 7, source=obx) or None,
                    abnormal_flag=self.text("OBX", 8, source=obx).upper() or None,
                    observed_at=self.when("OBX", 14, source=obx),
                    withdrawn=self.text("OBX", 11, source=obx).upper() in ("X", "W", "D"),
                )
            )
        if not found:
            raise Hl7Problem("OBX", 0, "segment missing: a result needs at least one OBX", code=101)
        return found


def _is_cjk(text: str) -> bool:
    return any("\u3400" <= ch <= "\u9fff" for ch in text)


def _western(given: str, family: str) -> str:
    return " ".join(part for part in (given, family) if part)


# --------------------------------------------------------------------------- the ACK


def acknowledgement(
    header: MessageHeader | None,
    code: AckCode,
    *,
    problem: Hl7Problem | None = None,
    reason: str | None = None,
    error_code: int | None = None,
    now: dt.datetime | None = None,
) -> str:
    """An original-mode ACK for ``header`` (or for an unreadable message), as ER7 text.

    AE and AR carry an ERR segment: ERR-2 the location (segment ^ sequence ^ field ^ repeat ^
    component), ERR-3 the HL7 table 0357 code, ERR-4 severity E, ERR-8 the reason in words.
    """
    now = now or dt.datetime.now(dt.UTC)
    separator = header.field_separator if header else "|"
    characters = header.encoding_characters if header else "^~\\&"
    component = characters[0]
    trigger = header.message_type.partition("^")[2] if header else ""
    msh = [
        "MSH",
        characters,
        header.receiving_application if header else "SUIFANG",
        header.receiving_facility if header else "",
        header.sending_application if header else "",
        header.sending_facility if header else "",
        now.strftime("%Y%m%d%H%M%S+0000"),
        "",
        component.join(("ACK", trigger, "ACK")) if trigger else "ACK",
        uuid.uuid4().hex[:20],
        header.processing_id if header and header.processing_id else "P",
        header.version if header and header.version else "2.5",
    ]
    if header and header.charset:
        msh += [""] * 5 + [header.charset]
    text = reason or (problem.reason if problem else None)
    msa = ["MSA", code, header.control_id if header else ""]
    if text and code != "AA":
        msa.append(_escape(text[:80], separator, characters))
    segments = [separator.join(msh), separator.join(msa)]
    if code != "AA" and (problem is not None or text):
        number = problem.code if problem else (error_code or 207)
        location = (
            component.join(
                (
                    problem.segment,
                    "1",
                    str(problem.field) if problem.field else "",
                    "1" if problem.field else "",
                    str(problem.component) if problem.component else "",
                )
            ).rstrip(component)
            if problem
            else ""
        )
        err = [
            "ERR",
            "",
            location,
            component.join((str(number), _ERROR_CODES.get(number, "Error"), "HL70357")),
            "E",
            "",
            "",
            "",
            _escape(str(problem) if problem else text or "", separator, characters),
        ]
        segments.append(separator.join(err))
    return "\r".join(segments) + "\r"


def _escape(text: str, separator: str, characters: str) -> str:
    escape = characters[2] if len(characters) > 2 else "\\"
    replacements = [
        (escape, f"{escape}E{escape}"),
        (separator, f"{escape}F{escape}"),
        (characters[0], f"{escape}S{escape}"),
        (characters[1], f"{escape}R{escape}"),
    ]
    if len(characters) > 3:
        replacements.append((characters[3], f"{escape}T{escape}"))
    out = text.replace("\r", " ").replace("\n", " ")
    for plain, escaped in replacements:
        out = out.replace(plain, escaped)
    return out
