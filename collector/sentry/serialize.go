package sentry

import (
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/leitstand/leitstand/collector"
)

// sentryEvent is a scrubbed event's fields by their meaning, read in one
// pass, for turning it back into Sentry's format.
type sentryEvent struct {
	e                                         *collector.Event
	dataset, project                          string
	level, platform, logger, release, env     string
	dist, host, txName, txID, txType, message string
	errType, errMessage                       string
	exception, breadcrumbs, contexts, extra   string
	fingerprint, measurements, spanData       string
	traceID, spanID, parentID, spanName, op   string
	status, duration, severity                string
	userID, userEmail, userName, userFull     string
	userSegment, userGeo, userData, sourceIP  string
	url, query, method, headers, cookies      string
	body, bodyRaw, reqEnv                     string
	sdkName, sdkVersion, attributes           string
	slug, checkInID, checkInStatus            string
	labels                                    []collector.Field
}

func sentryEventOf(e *collector.Event, labels []collector.Field) sentryEvent {
	v := sentryEvent{e: e, labels: labels[:0]}
	for i := range e.Fields {
		f := &e.Fields[i]
		switch f.Key {
		case collector.FieldDataset:
			v.dataset = f.Str
		case fProject:
			v.project = f.Str
		case collector.FieldLevel:
			v.level = f.Str
		case fPlatform:
			v.platform = f.Str
		case fLogger:
			v.logger = f.Str
		case fServiceVersion:
			v.release = f.Str
		case fServiceEnv:
			v.env = f.Str
		case fDist:
			v.dist = f.Str
		case collector.FieldHostName:
			v.host = f.Str
		case fTxName:
			v.txName = f.Str
		case fTxID:
			v.txID = f.Str
		case fTxType:
			v.txType = f.Str
		case collector.FieldMessage:
			v.message = f.Str
		case fErrType:
			v.errType = f.Str
		case fErrMessage:
			v.errMessage = f.Str
		case fException:
			v.exception = f.Str
		case fBreadcrumbs:
			v.breadcrumbs = f.Str
		case fContexts:
			v.contexts = f.Str
		case fExtra:
			v.extra = f.Str
		case fFingerprint:
			v.fingerprint = f.Str
		case fMeasure:
			v.measurements = f.Str
		case fSpanData:
			v.spanData = f.Str
		case fTraceID:
			v.traceID = f.Str
		case fSpanID:
			v.spanID = f.Str
		case fParentID:
			v.parentID = f.Str
		case fSpanName:
			v.spanName = f.Str
		case fSpanType:
			v.op = f.Str
		case fStatus:
			v.status = f.Str
		case fDuration:
			v.duration = f.Str
		case fSeverity:
			v.severity = f.Str
		case fUserID:
			v.userID = f.Str
		case fUserEmail:
			v.userEmail = f.Str
		case fUserName:
			v.userName = f.Str
		case fUserFullName:
			v.userFull = f.Str
		case fUserSegment:
			v.userSegment = f.Str
		case fUserGeo:
			v.userGeo = f.Str
		case fUserData:
			v.userData = f.Str
		case fSourceIP:
			v.sourceIP = f.Str
		case fURLFull:
			v.url = f.Str
		case fURLQuery:
			v.query = f.Str
		case fMethod:
			v.method = f.Str
		case fReqHeaders:
			v.headers = f.Str
		case fReqCookies:
			v.cookies = f.Str
		case fReqBody:
			v.body = f.Str
		case fReqData:
			v.bodyRaw = f.Str
		case fReqEnv:
			v.reqEnv = f.Str
		case fSDKName:
			v.sdkName = f.Str
		case fSDKVersion:
			v.sdkVersion = f.Str
		case fAttributes:
			v.attributes = f.Str
		case fMonitorSlug:
			v.slug = f.Str
		case fCheckInID:
			v.checkInID = f.Str
		case fCheckInStat:
			v.checkInStatus = f.Str
		default:
			if strings.HasPrefix(f.Key, "labels.") {
				v.labels = append(v.labels, *f)
			}
		}
	}
	return v
}

// obj writes a JSON object member by member, skipping empty values.
type obj struct {
	b     []byte
	empty bool
}

func openObj(b []byte) obj { return obj{b: append(b, '{'), empty: true} }

func (o *obj) key(k string) {
	if !o.empty {
		o.b = append(o.b, ',')
	}
	o.empty = false
	o.b = collector.AppendJSONString(o.b, k)
	o.b = append(o.b, ':')
}

func (o *obj) str(k, v string) {
	if v != "" {
		o.key(k)
		o.b = collector.AppendJSONString(o.b, v)
	}
}

// raw adds a member whose value is JSON text already.
func (o *obj) raw(k, v string) {
	if v != "" {
		o.key(k)
		o.b = append(o.b, v...)
	}
}

func (o *obj) time(k string, t time.Time) {
	o.key(k)
	o.b = append(o.b, '"')
	o.b = collector.AppendTimestamp(o.b, t)
	o.b = append(o.b, '"')
}

// seconds adds a time as epoch seconds with a fraction, as logs and spans
// carry it.
func (o *obj) seconds(k string, t time.Time) {
	o.key(k)
	o.b = strconv.AppendFloat(o.b, float64(t.UnixNano())/1e9, 'f', 6, 64)
}

func (o *obj) close() []byte { return append(o.b, '}') }

// wrapValues writes {"values": raw}.
func wrapValues(raw string) string {
	if raw == "" {
		return ""
	}
	return `{"values":` + raw + `}`
}

// endTime is @timestamp plus event.duration (for transactions and spans,
// whose @timestamp is their start).
func endTime(v *sentryEvent) time.Time {
	d, err := strconv.ParseInt(v.duration, 10, 64)
	if err != nil {
		return v.e.Timestamp
	}
	return v.e.Timestamp.Add(time.Duration(d))
}

// appendEvent writes an error, message or transaction event. spans are the
// transaction's child spans.
func appendEvent(b []byte, v *sentryEvent, spans []sentryEvent) []byte {
	o := openObj(b)
	o.str("event_id", v.e.ID)
	tx := v.dataset == dsTransaction
	if tx {
		o.str("type", "transaction")
		o.time("start_timestamp", v.e.Timestamp)
		o.time("timestamp", endTime(v))
	} else {
		o.time("timestamp", v.e.Timestamp)
	}
	o.str("level", v.level)
	o.str("platform", v.platform)
	o.str("logger", v.logger)
	o.str("release", v.release)
	o.str("environment", v.env)
	o.str("dist", v.dist)
	o.str("server_name", v.host)
	o.str("transaction", v.txName)
	if v.dataset == dsMessage {
		o.str("message", v.message)
	}
	if v.exception != "" {
		o.raw("exception", wrapValues(v.exception))
	} else if v.errType != "" || v.errMessage != "" {
		e := openObj(nil)
		e.str("type", v.errType)
		e.str("value", v.errMessage)
		o.raw("exception", `{"values":[`+string(e.close())+`]}`)
	}
	o.raw("breadcrumbs", wrapValues(v.breadcrumbs))
	contexts := v.contexts
	if contexts == "" && v.traceID != "" {
		t := openObj(nil)
		t.str("trace_id", v.traceID)
		t.str("span_id", v.spanID)
		t.str("parent_span_id", v.parentID)
		t.str("op", v.txType)
		t.str("status", v.status)
		contexts = `{"trace":` + string(t.close()) + `}`
	}
	o.raw("contexts", contexts)
	o.raw("extra", v.extra)
	o.raw("fingerprint", v.fingerprint)
	o.raw("measurements", v.measurements)
	appendTags(&o, v.labels)
	appendUser(&o, v)
	appendRequest(&o, v)
	if v.sdkName != "" {
		s := openObj(nil)
		s.str("name", v.sdkName)
		s.str("version", v.sdkVersion)
		o.raw("sdk", string(s.close()))
	}
	if tx {
		o.key("spans")
		o.b = append(o.b, '[')
		for i := range spans {
			if i > 0 {
				o.b = append(o.b, ',')
			}
			o.b = appendChildSpan(o.b, &spans[i])
		}
		o.b = append(o.b, ']')
	}
	return o.close()
}

func appendTags(o *obj, labels []collector.Field) {
	if len(labels) == 0 {
		return
	}
	t := openObj(nil)
	for _, l := range labels {
		t.str(strings.TrimPrefix(l.Key, "labels."), l.Str)
	}
	o.raw("tags", string(t.close()))
}

func appendUser(o *obj, v *sentryEvent) {
	u := openObj(nil)
	u.str("id", v.userID)
	u.str("email", v.userEmail)
	u.str("username", v.userName)
	u.str("name", v.userFull)
	u.str("segment", v.userSegment)
	u.str("ip_address", v.sourceIP)
	u.raw("geo", v.userGeo)
	u.raw("data", v.userData)
	if !u.empty {
		o.raw("user", string(u.close()))
	}
}

func appendRequest(o *obj, v *sentryEvent) {
	r := openObj(nil)
	r.str("url", v.url)
	r.str("method", v.method)
	r.str("query_string", v.query)
	r.raw("headers", v.headers)
	r.str("cookies", v.cookies)
	if v.bodyRaw != "" {
		r.raw("data", v.bodyRaw)
	} else {
		r.str("data", v.body)
	}
	r.raw("env", v.reqEnv)
	if !r.empty {
		o.raw("request", string(r.close()))
	}
}

// appendChildSpan writes a span of a transaction.
func appendChildSpan(b []byte, v *sentryEvent) []byte {
	o := openObj(b)
	o.str("trace_id", v.traceID)
	o.str("span_id", v.spanID)
	o.str("parent_span_id", v.parentID)
	o.str("op", v.op)
	o.str("description", v.spanName)
	o.time("start_timestamp", v.e.Timestamp)
	o.time("timestamp", endTime(v))
	o.str("status", v.status)
	o.raw("data", v.spanData)
	appendTags(&o, v.labels)
	return o.close()
}

// appendAttributes writes the attributes of a log or a v2 span: the
// fields that came from attributes, and sentry.attributes.
func appendAttributes(o *obj, v *sentryEvent) {
	a := openObj(nil)
	attr := func(k, val string) {
		if val != "" {
			a.key(k)
			a.b = append(a.b, `{"value":`...)
			a.b = collector.AppendJSONString(a.b, val)
			a.b = append(a.b, `,"type":"string"}`...)
		}
	}
	attr("sentry.environment", v.env)
	attr("sentry.release", v.release)
	attr("sentry.sdk.name", v.sdkName)
	attr("sentry.sdk.version", v.sdkVersion)
	attr("sentry.server.address", v.host)
	attr("sentry.op", v.op)
	attr("user.id", v.userID)
	attr("user.email", v.userEmail)
	attr("user.name", v.userName)
	attr("user.ip_address", v.sourceIP)
	attr("url.full", v.url)
	attr("http.request.method", v.method)
	if v.attributes != "" {
		var s scanner
		var arena collector.Arena
		s.reset(unsafe.Slice(unsafe.StringData(v.attributes), len(v.attributes)), &arena)
		if s.object() {
			first := true
			for k, ok := s.member(&first); ok; k, ok = s.member(&first) {
				key := string(k)
				raw := s.raw()
				if raw == "" {
					break
				}
				typ := "string"
				switch c := raw[0]; {
				case c == 't' || c == 'f':
					typ = "boolean"
				case c == '-' || c >= '0' && c <= '9':
					typ = "integer"
					if strings.ContainsAny(raw, ".eE") {
						typ = "double"
					}
				case c == '[':
					typ = "array"
				case c == '{' || c == 'n':
					continue
				}
				a.key(key)
				a.b = append(a.b, `{"value":`...)
				a.b = append(a.b, raw...)
				a.b = append(a.b, `,"type":"`...)
				a.b = append(a.b, typ...)
				a.b = append(a.b, `"}`...)
			}
		}
	}
	if !a.empty {
		o.raw("attributes", string(a.close()))
	}
}

// appendLog writes one record of a log container.
func appendLog(b []byte, v *sentryEvent) []byte {
	o := openObj(b)
	o.seconds("timestamp", v.e.Timestamp)
	o.str("trace_id", v.traceID)
	o.str("span_id", v.spanID)
	o.str("level", v.level)
	o.str("body", v.message)
	o.raw("severity_number", v.severity)
	appendAttributes(&o, v)
	return o.close()
}

// appendSpanV2 writes one span of a v2 span container.
func appendSpanV2(b []byte, v *sentryEvent) []byte {
	o := openObj(b)
	o.str("trace_id", v.traceID)
	o.str("span_id", v.spanID)
	o.str("parent_span_id", v.parentID)
	o.str("name", v.spanName)
	status := "ok"
	if v.status != "" && v.status != "ok" {
		status = "error"
	}
	o.str("status", status)
	o.seconds("start_timestamp", v.e.Timestamp)
	o.seconds("end_timestamp", endTime(v))
	appendAttributes(&o, v)
	return o.close()
}

// appendCheckIn writes a check-in.
func appendCheckIn(b []byte, v *sentryEvent) []byte {
	o := openObj(b)
	o.str("check_in_id", v.checkInID)
	o.str("monitor_slug", v.slug)
	o.str("status", v.checkInStatus)
	if d, err := strconv.ParseInt(v.duration, 10, 64); err == nil {
		o.key("duration")
		o.b = strconv.AppendFloat(o.b, float64(d)/1e9, 'f', -1, 64)
	}
	o.str("release", v.release)
	o.str("environment", v.env)
	if v.traceID != "" {
		t := openObj(nil)
		t.str("trace_id", v.traceID)
		o.raw("contexts", `{"trace":`+string(t.close())+`}`)
	}
	return o.close()
}
