/* The relay's per-packet work in C (issue 19): what Python paid most for per forwarded packet.
 *
 * RtpView   one received packet: its payload and the header fields the relay reads
 *           (a plain C object: no __dict__, not tracked by the garbage collector).
 * parse     the header fields of one plain RTP packet.
 * Receiver  one SRTP session's receive step: classify a datagram, unprotect it in place in
 *           its own buffer, parse it.
 * Sender    one outgoing stream: pack its header, copy the payload, protect and send on a
 *           descriptor; the NACK history, the counts sender reports need, the last packet.
 * ReceiverDuties  what aiortc's receiver does per packet, with BitrateEstimator (its
 *           receive-side bandwidth estimate but the rate control), StreamStats (its
 *           receiver-report statistics) and NackGenerator (the sequence numbers missing).
 * LegReceiver  a load client's receive step (bench/leanleg.py): what arrives, counted per
 *           stream, one packet in a few authenticated and decrypted.
 *
 * Each is aiortc's or libwebrtc's behaviour, tested against aiortc in tests/test_packet_path.py;
 * protocol/aiortc_glue.py is where they meet aiortc's objects.
 *
 * libsrtp is pylibsrtp's (its cffi binding links it in): its functions and sessions come in
 * as addresses, and every object holding one keeps the pylibsrtp Session that owns it alive.
 * Built by `python -m protocol.rtpfast_build` (make does it); read with protocol/rtpfast.py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <limits.h>
#include <math.h>
#include <time.h>

#define BUFFER_SIZE 1500
/* pylibsrtp's 1500-byte buffer less its largest SRTP trailer (pylibsrtp refuses longer). */
#define PLAIN_LIMIT (1500 - 16 - 128)
#define NTP_UNIX_OFFSET 2208988800.0
#define LATENCY_SAMPLE_EVERY 16
#define MAX_MID 16

typedef int (*srtp_fn)(void *ctx, void *buffer, int *length);

static unsigned long sample_counter = 0;

static double clock_seconds(clockid_t clock) {
    /* as Python's time.time() / time.perf_counter(): nanoseconds, then seconds */
    struct timespec ts;
    clock_gettime(clock, &ts);
    int64_t ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    return (double)ns / 1e9;
}

/* --- RtpView ------------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *payload;
    int payload_type;
    int marker;
    int sequence_number;
    unsigned int timestamp;
    unsigned int ssrc;
    PyObject *abs_send_time; /* int or None */
    PyObject *audio_level;   /* the raw one-byte value (V bit + level), or None */
    long long arrival_ms;
    unsigned long long ntp;
    double wall; /* time.time() at arrival */
    double t0;   /* perf_counter at arrival for sampled packets, else 0.0 */
} RtpView;

static PyTypeObject RtpViewType;

static void view_set_times(RtpView *v, double wall, double t0) {
    v->wall = wall;
    v->t0 = t0;
    v->arrival_ms = (long long)((wall + NTP_UNIX_OFFSET) * 1000);
    v->ntp = (unsigned long long)((wall + NTP_UNIX_OFFSET) * 4294967296.0);
}

static PyObject *view_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *names[] = {"payload", "payload_type", "marker", "sequence_number",
                            "timestamp", "ssrc", "abs_send_time", "audio_level",
                            "wall", "t0", NULL};
    PyObject *payload, *abs_send_time, *audio_level;
    int payload_type, marker, sequence_number;
    unsigned int timestamp, ssrc;
    double wall, t0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OiiiIIOOdd", names, &payload, &payload_type,
                                     &marker, &sequence_number, &timestamp, &ssrc,
                                     &abs_send_time, &audio_level, &wall, &t0))
        return NULL;
    RtpView *v = (RtpView *)type->tp_alloc(type, 0);
    if (v == NULL)
        return NULL;
    Py_INCREF(payload);
    Py_INCREF(abs_send_time);
    Py_INCREF(audio_level);
    v->payload = payload;
    v->payload_type = payload_type;
    v->marker = marker;
    v->sequence_number = sequence_number;
    v->timestamp = timestamp;
    v->ssrc = ssrc;
    v->abs_send_time = abs_send_time;
    v->audio_level = audio_level;
    view_set_times(v, wall, t0);
    return (PyObject *)v;
}

static void view_dealloc(RtpView *v) {
    Py_XDECREF(v->payload);
    Py_XDECREF(v->abs_send_time);
    Py_XDECREF(v->audio_level);
    Py_TYPE(v)->tp_free((PyObject *)v);
}

static PyMemberDef view_members[] = {
    {"payload", T_OBJECT_EX, offsetof(RtpView, payload), 0, NULL},
    {"payload_type", T_INT, offsetof(RtpView, payload_type), 0, NULL},
    {"marker", T_INT, offsetof(RtpView, marker), 0, NULL},
    {"sequence_number", T_INT, offsetof(RtpView, sequence_number), 0, NULL},
    {"timestamp", T_UINT, offsetof(RtpView, timestamp), 0, NULL},
    {"ssrc", T_UINT, offsetof(RtpView, ssrc), 0, NULL},
    {"abs_send_time", T_OBJECT, offsetof(RtpView, abs_send_time), 0, NULL},
    {"audio_level", T_OBJECT, offsetof(RtpView, audio_level), 0, NULL},
    {"arrival_ms", T_LONGLONG, offsetof(RtpView, arrival_ms), 0, NULL},
    {"ntp", T_ULONGLONG, offsetof(RtpView, ntp), 0, NULL},
    {"wall", T_DOUBLE, offsetof(RtpView, wall), 0, NULL},
    {"t0", T_DOUBLE, offsetof(RtpView, t0), 0, NULL},
    {NULL},
};

static PyTypeObject RtpViewType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "protocol._rtpfast.RtpView",
    .tp_basicsize = sizeof(RtpView),
    .tp_dealloc = (destructor)view_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One received RTP packet: its payload plus the header fields the relay reads.",
    .tp_members = view_members,
    .tp_new = view_new,
};

/* --- parse -------------------------------------------------------------------------------- */

/* The view of the plain packet in data[0:n]; NULL with no exception set when malformed. */
static PyObject *parse_packet(const unsigned char *data, Py_ssize_t n, int abs_id, int level_id) {
    if (n < 12)
        return NULL;
    int b0 = data[0], b1 = data[1];
    Py_ssize_t pos = 12 + 4 * (b0 & 0x0F);
    Py_ssize_t end = (b0 & 0x20) ? n - data[n - 1] : n; /* padding */
    long abs_send_time = -1, audio_level = -1;
    if (b0 & 0x10) { /* header extension */
        if (pos + 4 > n)
            return NULL;
        int profile = (data[pos] << 8) | data[pos + 1];
        Py_ssize_t words = (data[pos + 2] << 8) | data[pos + 3];
        Py_ssize_t ext_end = pos + 4 + 4 * words;
        if (ext_end > n)
            return NULL;
        if (profile == 0xBEDE && (abs_id > 0 || level_id > 0)) {
            Py_ssize_t i = pos + 4;
            while (i < ext_end) {
                int byte = data[i];
                if (byte == 0) {
                    i += 1;
                    continue;
                }
                int xid = byte >> 4, len = byte & 0x0F;
                if (xid == 15 || i + 2 + len > ext_end)
                    break; /* the end, or an element running past the extension block */
                if (abs_id > 0 && xid == abs_id && len == 2)
                    abs_send_time = ((long)data[i + 1] << 16) | (data[i + 2] << 8) | data[i + 3];
                else if (level_id > 0 && xid == level_id && len == 0)
                    audio_level = data[i + 1];
                i += 2 + len;
            }
        }
        pos = ext_end;
    }
    if (end <= pos)
        return NULL;
    RtpView *v = PyObject_New(RtpView, &RtpViewType);
    if (v == NULL)
        return NULL;
    v->payload = NULL;
    v->abs_send_time = NULL;
    v->audio_level = NULL;
    v->payload = PyBytes_FromStringAndSize((const char *)data + pos, end - pos);
    if (abs_send_time >= 0) {
        v->abs_send_time = PyLong_FromLong(abs_send_time);
    } else {
        Py_INCREF(Py_None);
        v->abs_send_time = Py_None;
    }
    if (audio_level >= 0) {
        v->audio_level = PyLong_FromLong(audio_level);
    } else {
        Py_INCREF(Py_None);
        v->audio_level = Py_None;
    }
    if (v->payload == NULL || v->abs_send_time == NULL || v->audio_level == NULL) {
        Py_DECREF(v);
        return NULL;
    }
    v->payload_type = b1 & 0x7F;
    v->marker = b1 >> 7;
    v->sequence_number = (data[2] << 8) | data[3];
    v->timestamp = ((unsigned int)data[4] << 24) | (data[5] << 16) | (data[6] << 8) | data[7];
    v->ssrc = ((unsigned int)data[8] << 24) | (data[9] << 16) | (data[10] << 8) | data[11];
    sample_counter += 1;
    view_set_times(v, clock_seconds(CLOCK_REALTIME),
                   sample_counter % LATENCY_SAMPLE_EVERY == 0 ? clock_seconds(CLOCK_MONOTONIC)
                                                              : 0.0);
    return (PyObject *)v;
}

static int id_arg(PyObject *o) {
    /* an extension id: None (not negotiated) reads as 0 */
    return o == Py_None ? 0 : (int)PyLong_AsLong(o);
}

static PyObject *parse(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    Py_buffer data;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "parse(data, abs_id, level_id)");
        return NULL;
    }
    int abs_id = id_arg(args[1]), level_id = id_arg(args[2]);
    if (PyErr_Occurred())
        return NULL;
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *view = parse_packet(data.buf, data.len, abs_id, level_id);
    PyBuffer_Release(&data);
    if (view == NULL && !PyErr_Occurred())
        Py_RETURN_NONE;
    return view;
}

/* --- Receiver ----------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *session; /* the pylibsrtp Session whose context this is */
    srtp_fn unprotect;
    void *ctx;
    unsigned char buffer[BUFFER_SIZE];
} Receiver;

static int receiver_init(Receiver *r, PyObject *args, PyObject *kwds) {
    PyObject *session, *fn, *ctx;
    if (!PyArg_ParseTuple(args, "OO!O!", &session, &PyLong_Type, &fn, &PyLong_Type, &ctx))
        return -1;
    r->unprotect = (srtp_fn)PyLong_AsVoidPtr(fn);
    r->ctx = PyLong_AsVoidPtr(ctx);
    if (PyErr_Occurred())
        return -1;
    Py_INCREF(session);
    Py_XSETREF(r->session, session);
    return 0;
}

static void receiver_dealloc(Receiver *r) {
    Py_XDECREF(r->session);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

enum { DROP_TOO_LONG = 1, DROP_UNPROTECT = 2, DROP_MALFORMED = 3 };

static PyObject *receiver_receive(Receiver *r, PyObject *const *args, Py_ssize_t nargs) {
    /* receive(datagram, abs_id, level_id): an RtpView; None when the datagram is not RTP
     * (STUN, DTLS, RTCP: aioice's and aiortc's); an int when it is dropped (DROP_*) */
    if (nargs != 3 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "receive(datagram: bytes, abs_id, level_id)");
        return NULL;
    }
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]);
    if (n < 12 || data[0] < 128 || data[0] > 191 || (data[1] >= 192 && data[1] <= 223))
        Py_RETURN_NONE;
    if (n > PLAIN_LIMIT)
        return PyLong_FromLong(DROP_TOO_LONG);
    int abs_id = id_arg(args[1]), level_id = id_arg(args[2]);
    if (PyErr_Occurred())
        return NULL;
    memcpy(r->buffer, data, n);
    int length = (int)n;
    if (r->unprotect(r->ctx, r->buffer, &length) != 0)
        return PyLong_FromLong(DROP_UNPROTECT); /* authentication or replay check failed */
    PyObject *view = parse_packet(r->buffer, length, abs_id, level_id);
    if (view == NULL && !PyErr_Occurred())
        return PyLong_FromLong(DROP_MALFORMED);
    return view;
}

static PyMethodDef receiver_methods[] = {
    {"receive", (PyCFunction)(void (*)(void))receiver_receive, METH_FASTCALL, NULL},
    {NULL},
};

static PyTypeObject ReceiverType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "protocol._rtpfast.Receiver",
    .tp_basicsize = sizeof(Receiver),
    .tp_dealloc = (destructor)receiver_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Receiver(session, srtp_unprotect, srtp_ctx): one SRTP session's receive step.",
    .tp_methods = receiver_methods,
    .tp_init = (initproc)receiver_init,
    .tp_new = PyType_GenericNew,
};

/* --- Sender ------------------------------------------------------------------------------- */

typedef struct {
    PyObject *payload; /* NULL: empty slot */
    int seq;
    unsigned int ts;
    unsigned long long ntp;
    int marker;
    int level; /* -1: none */
} HistorySlot;

typedef struct {
    PyObject_HEAD
    /* the stream */
    unsigned int ssrc;
    int payload_type;
    unsigned char mid[MAX_MID + 1]; /* the MID element: id/length byte and value */
    int mid_length;
    int abs_id, level_id;
    /* where it goes */
    PyObject *session; /* the pylibsrtp Session whose context this is; NULL: unbound */
    srtp_fn protect;
    void *ctx;
    int fd; /* -1: protect() only, the caller sends (TURN) */
    struct sockaddr_storage dest;
    socklen_t dest_length;
    /* what was sent */
    HistorySlot *history;
    int history_size;
    long long packet_count, octet_count;
    int last_seq; /* -1: nothing yet */
    unsigned int last_ts;
    unsigned long long last_ntp;
    int last_size;
    unsigned char buffer[BUFFER_SIZE];
} Sender;

static int sender_init(Sender *s, PyObject *args, PyObject *kwds) {
    unsigned int ssrc;
    int payload_type, abs_id, level_id, history_size;
    Py_buffer mid;
    if (!PyArg_ParseTuple(args, "Iiy*iii", &ssrc, &payload_type, &mid, &abs_id, &level_id,
                          &history_size))
        return -1;
    if (mid.len > MAX_MID + 1 || history_size <= 0 || payload_type < 0 || payload_type > 127) {
        PyBuffer_Release(&mid);
        PyErr_SetString(PyExc_ValueError, "MID element too long, or a bad history or type");
        return -1;
    }
    s->ssrc = ssrc;
    s->payload_type = payload_type;
    memcpy(s->mid, mid.buf, mid.len);
    s->mid_length = (int)mid.len;
    PyBuffer_Release(&mid);
    s->abs_id = abs_id;
    s->level_id = level_id;
    s->fd = -1;
    s->last_seq = -1;
    if (s->history != NULL)
        for (int i = 0; i < s->history_size; i++)
            Py_CLEAR(s->history[i].payload);
    PyMem_Free(s->history);
    s->history = PyMem_Calloc(history_size, sizeof(HistorySlot));
    if (s->history == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    s->history_size = history_size;
    return 0;
}

static void sender_dealloc(Sender *s) {
    if (s->history != NULL) {
        for (int i = 0; i < s->history_size; i++)
            Py_XDECREF(s->history[i].payload);
        PyMem_Free(s->history);
    }
    Py_XDECREF(s->session);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static PyObject *sender_bind(Sender *s, PyObject *args) {
    /* bind(session, srtp_protect, srtp_ctx, fd, host, port): where packets go from now on.
     * fd -1 (or a host that is not a plain IP address): protect() only, the caller sends. */
    PyObject *session, *fn, *ctx;
    int fd, port;
    const char *host;
    if (!PyArg_ParseTuple(args, "OO!O!isi", &session, &PyLong_Type, &fn, &PyLong_Type, &ctx,
                          &fd, &host, &port))
        return NULL;
    srtp_fn protect = (srtp_fn)PyLong_AsVoidPtr(fn);
    void *context = PyLong_AsVoidPtr(ctx);
    if (PyErr_Occurred())
        return NULL;
    memset(&s->dest, 0, sizeof(s->dest));
    s->dest_length = 0;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&s->dest;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&s->dest;
    if (fd >= 0 && inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        s->dest_length = sizeof(*v4);
    } else if (fd >= 0 && inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        s->dest_length = sizeof(*v6);
    } else {
        fd = -1;
    }
    s->fd = fd;
    s->protect = protect;
    s->ctx = context;
    Py_INCREF(session);
    Py_XSETREF(s->session, session);
    return PyBool_FromLong(fd >= 0);
}

/* Pack the header into out; its length. */
static int pack_header(Sender *s, unsigned char *out, int seq, unsigned int ts, int marker,
                       unsigned long long ntp, int level) {
    int with_level = level >= 0 && s->level_id > 0;
    int size = s->mid_length + (s->abs_id > 0 ? 4 : 0) + (with_level ? 2 : 0);
    out[0] = size ? 0x90 : 0x80;
    out[1] = (unsigned char)((marker ? 0x80 : 0) | s->payload_type);
    out[2] = (unsigned char)(seq >> 8);
    out[3] = (unsigned char)seq;
    out[4] = (unsigned char)(ts >> 24);
    out[5] = (unsigned char)(ts >> 16);
    out[6] = (unsigned char)(ts >> 8);
    out[7] = (unsigned char)ts;
    out[8] = (unsigned char)(s->ssrc >> 24);
    out[9] = (unsigned char)(s->ssrc >> 16);
    out[10] = (unsigned char)(s->ssrc >> 8);
    out[11] = (unsigned char)s->ssrc;
    if (!size)
        return 12;
    int pad = (4 - size % 4) % 4;
    int words = (size + pad) / 4;
    unsigned char *p = out + 12;
    *p++ = 0xBE;
    *p++ = 0xDE;
    *p++ = (unsigned char)(words >> 8);
    *p++ = (unsigned char)words;
    memcpy(p, s->mid, s->mid_length);
    p += s->mid_length;
    if (s->abs_id > 0) {
        unsigned long ast = (unsigned long)(ntp >> 14) & 0x00FFFFFF;
        *p++ = (unsigned char)(s->abs_id << 4 | 2);
        *p++ = (unsigned char)(ast >> 16);
        *p++ = (unsigned char)(ast >> 8);
        *p++ = (unsigned char)ast;
    }
    if (with_level) {
        *p++ = (unsigned char)(s->level_id << 4);
        *p++ = (unsigned char)level;
    }
    for (int i = 0; i < pad; i++)
        *p++ = 0;
    return (int)(p - out);
}

typedef struct {
    PyObject *payload;
    int seq;
    unsigned int ts;
    int marker;
    unsigned long long ntp;
    int level;
} Outgoing;

static int header_args(PyObject *const *args, Outgoing *o) {
    /* (seq, ts, marker, ntp, level: int | None) */
    o->seq = (int)(PyLong_AsLong(args[0]) & 0xFFFF);
    o->ts = (unsigned int)PyLong_AsUnsignedLongMask(args[1]);
    o->marker = PyObject_IsTrue(args[2]);
    o->ntp = PyLong_AsUnsignedLongLongMask(args[3]);
    o->level = args[4] == Py_None ? -1 : (int)(PyLong_AsLong(args[4]) & 0xFF);
    return PyErr_Occurred() ? -1 : 0;
}

static int outgoing_args(PyObject *const *args, Py_ssize_t nargs, Outgoing *o) {
    /* (payload: bytes, seq, ts, marker, ntp, level: int | None) */
    if (nargs != 6 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "(payload: bytes, seq, ts, marker, ntp, level)");
        return -1;
    }
    o->payload = args[0];
    return header_args(args + 1, o);
}

/* Header, payload, protect, in the sender's buffer: the protected length, -1 when not. */
static int protect_outgoing(Sender *s, Outgoing *o) {
    if (s->session == NULL)
        return -1;
    int head = pack_header(s, s->buffer, o->seq, o->ts, o->marker, o->ntp, o->level);
    Py_ssize_t n = PyBytes_GET_SIZE(o->payload);
    if (head + n > PLAIN_LIMIT)
        return -1;
    memcpy(s->buffer + head, PyBytes_AS_STRING(o->payload), n);
    int length = head + (int)n;
    s->last_size = length;
    if (s->protect(s->ctx, s->buffer, &length) != 0)
        return -1;
    return length;
}

static void note_sent(Sender *s, Outgoing *o) {
    HistorySlot *slot = &s->history[o->seq % s->history_size];
    Py_INCREF(o->payload);
    Py_XSETREF(slot->payload, o->payload);
    slot->seq = o->seq;
    slot->ts = o->ts;
    slot->ntp = o->ntp;
    slot->marker = o->marker;
    slot->level = o->level;
    s->packet_count += 1;
    s->octet_count += PyBytes_GET_SIZE(o->payload);
    s->last_seq = o->seq;
    s->last_ts = o->ts;
    s->last_ntp = o->ntp;
}

static PyObject *send_outgoing(Sender *s, Outgoing *o);

static PyObject *sender_send(Sender *s, PyObject *const *args, Py_ssize_t nargs) {
    /* send(payload, seq, ts, marker, ntp, level): the plain size sent, 0 when not sent (a
     * full socket buffer drops the packet: late media is no use to a viewer) */
    Outgoing o;
    if (outgoing_args(args, nargs, &o) < 0)
        return NULL;
    return send_outgoing(s, &o);
}

static int view_outgoing(PyObject *const *args, Py_ssize_t nargs, Outgoing *o) {
    /* (view: RtpView, seq, ts): the view's payload, marker, arrival and audio level */
    if (nargs != 3 || Py_TYPE(args[0]) != &RtpViewType) {
        PyErr_SetString(PyExc_TypeError, "(view: RtpView, seq, ts)");
        return -1;
    }
    RtpView *v = (RtpView *)args[0];
    if (v->payload == NULL || !PyBytes_Check(v->payload)) {
        PyErr_SetString(PyExc_TypeError, "the view's payload is not bytes");
        return -1;
    }
    o->payload = v->payload;
    o->seq = (int)(PyLong_AsLong(args[1]) & 0xFFFF);
    o->ts = (unsigned int)PyLong_AsUnsignedLongMask(args[2]);
    o->marker = v->marker != 0;
    o->ntp = v->ntp;
    o->level = v->audio_level == NULL || v->audio_level == Py_None
                   ? -1
                   : (int)(PyLong_AsLong(v->audio_level) & 0xFF);
    return PyErr_Occurred() ? -1 : 0;
}

static PyObject *send_outgoing(Sender *s, Outgoing *o) {
    if (s->fd < 0)
        return PyLong_FromLong(0);
    int length = protect_outgoing(s, o);
    if (length < 0)
        return PyLong_FromLong(0);
    if (sendto(s->fd, s->buffer, length, MSG_DONTWAIT, (struct sockaddr *)&s->dest,
               s->dest_length) < 0)
        return PyLong_FromLong(0);
    note_sent(s, o);
    return PyLong_FromLong(s->last_size);
}

static PyObject *sender_forward(Sender *s, PyObject *const *args, Py_ssize_t nargs) {
    /* forward(view, seq, ts): send() with the view's own payload, marker, arrival time
     * (abs-send-time) and audio level, read from the view itself */
    Outgoing o;
    if (view_outgoing(args, nargs, &o) < 0)
        return NULL;
    return send_outgoing(s, &o);
}

static PyObject *sender_protect(Sender *s, PyObject *const *args, Py_ssize_t nargs) {
    /* protect(payload, seq, ts, marker, ntp, level): the datagram for the caller to send
     * (counted as sent), or None; ``last_size`` is its plain size */
    Outgoing o;
    if (outgoing_args(args, nargs, &o) < 0)
        return NULL;
    int length = protect_outgoing(s, &o);
    if (length < 0)
        Py_RETURN_NONE;
    note_sent(s, &o);
    return PyBytes_FromStringAndSize((const char *)s->buffer, length);
}

static PyObject *sender_header(Sender *s, PyObject *const *args, Py_ssize_t nargs) {
    /* header(seq, ts, marker, ntp, level): this sender's header, as send() packs it */
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "header(seq, ts, marker, ntp, level)");
        return NULL;
    }
    Outgoing o;
    if (header_args(args, &o) < 0)
        return NULL;
    unsigned char head[64];
    int n = pack_header(s, head, o.seq, o.ts, o.marker, o.ntp, o.level);
    return PyBytes_FromStringAndSize((const char *)head, n);
}

static PyObject *sender_history(Sender *s, PyObject *arg) {
    /* history(seq): (payload, ts, marker, ntp, level) as first sent, or None */
    long seq = PyLong_AsLong(arg);
    if (seq == -1 && PyErr_Occurred())
        return NULL;
    if (seq < 0 || seq > 0xFFFF)
        Py_RETURN_NONE;
    HistorySlot *slot = &s->history[seq % s->history_size];
    if (slot->payload == NULL || slot->seq != seq)
        Py_RETURN_NONE;
    if (slot->level < 0)
        return Py_BuildValue("(OIiKO)", slot->payload, slot->ts, slot->marker, slot->ntp,
                             Py_None);
    return Py_BuildValue("(OIiKi)", slot->payload, slot->ts, slot->marker, slot->ntp,
                         slot->level);
}

static PyMethodDef sender_methods[] = {
    {"bind", (PyCFunction)sender_bind, METH_VARARGS, NULL},
    {"send", (PyCFunction)(void (*)(void))sender_send, METH_FASTCALL, NULL},
    {"forward", (PyCFunction)(void (*)(void))sender_forward, METH_FASTCALL, NULL},
    {"protect", (PyCFunction)(void (*)(void))sender_protect, METH_FASTCALL, NULL},
    {"header", (PyCFunction)(void (*)(void))sender_header, METH_FASTCALL, NULL},
    {"history", (PyCFunction)sender_history, METH_O, NULL},
    {NULL},
};

static PyMemberDef sender_members[] = {
    {"packet_count", T_LONGLONG, offsetof(Sender, packet_count), READONLY, NULL},
    {"octet_count", T_LONGLONG, offsetof(Sender, octet_count), READONLY, NULL},
    {"last_seq", T_INT, offsetof(Sender, last_seq), READONLY, NULL},
    {"last_ts", T_UINT, offsetof(Sender, last_ts), READONLY, NULL},
    {"last_ntp", T_ULONGLONG, offsetof(Sender, last_ntp), READONLY, NULL},
    {"last_size", T_INT, offsetof(Sender, last_size), READONLY, NULL},
    {"fd", T_INT, offsetof(Sender, fd), READONLY, NULL},
    {NULL},
};

static PyTypeObject SenderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "protocol._rtpfast.Sender",
    .tp_basicsize = sizeof(Sender),
    .tp_dealloc = (destructor)sender_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Sender(ssrc, payload_type, mid_element, abs_id, level_id, history_size).",
    .tp_methods = sender_methods,
    .tp_members = sender_members,
    .tp_init = (initproc)sender_init,
    .tp_new = PyType_GenericNew,
};

/* --- BitrateEstimator --------------------------------------------------------------------- */
/* aiortc's receive-side estimator (aiortc/rate.py: RateCounter, InterArrival, OveruseEstimator,
 * OveruseDetector; RemoteBitrateEstimator.add) per packet, operation for operation in doubles,
 * so its estimates are aiortc's (tests/test_packet_path.py). The rate control (AimdRateControl)
 * stays in Python: it runs when this says so, about twice a second. */

#define RATE_WINDOW 1000
#define RATE_SCALE 8000
#define GROUP_LENGTH ((5u << 26) / 1000) /* TIMESTAMP_GROUP_LENGTH_MS << INTER_ARRIVAL_SHIFT */
#define TIMESTAMP_TO_MS (1000.0 / (1 << 26))
#define BURST_DELTA_THRESHOLD_MS 5
#define MAX_ADAPT_OFFSET_MS 15
#define MIN_NUM_DELTAS 60
#define DELTA_COUNTER_MAX 1000
#define FRAME_PERIOD_HISTORY 60
#define FEEDBACK_INTERVAL_MS 500
#define MAX_SSRCS 32
enum { NORMAL = 0, UNDERUSING = 1, OVERUSING = 2 };

typedef struct {
    int open; /* 0: no group */
    long long arrival_time; /* -1 (None) until a packet was added */
    int has_arrival;
    uint32_t first_timestamp, last_timestamp;
    long long size;
} Group;

typedef struct {
    PyObject_HEAD
    /* RateCounter (LeanRateCounter) */
    long long counts[RATE_WINDOW], values[RATE_WINDOW];
    int origin_index, has_origin;
    long long origin_ms, total_count, total_value;
    int incoming_initialized;
    /* InterArrival */
    Group current, previous;
    /* OveruseEstimator */
    double e00, e01, e10, e11, offset, previous_offset, slope, avg_noise, var_noise;
    int num_of_deltas;
    double history[FRAME_PERIOD_HISTORY];
    int history_length;
    /* OveruseDetector */
    int hypothesis;
    int has_detector_update;
    long long detector_update_ms;
    int overuse_counter, has_overuse_time;
    double overuse_time, detector_previous_offset, threshold;
    /* RemoteBitrateEstimator */
    long long last_update_ms; /* -1: None */
    uint32_t ssrcs[MAX_SSRCS];
    int ssrc_count;
    /* libwebrtc's TimeToReduceFurther, from the Python rate control's state */
    long long reduce_after_ms;
    double reduce_below; /* < 0: never */
} BitrateEstimator;

static int estimator_init(BitrateEstimator *e, PyObject *args, PyObject *kwds) {
    if (!PyArg_ParseTuple(args, ""))
        return -1;
    memset((char *)e + sizeof(PyObject), 0, sizeof(*e) - sizeof(PyObject));
    e->incoming_initialized = 1;
    e->e00 = 100.0;
    e->e11 = 0.1;
    e->slope = 1.0 / 64;
    e->var_noise = 50.0;
    e->threshold = 12.5;
    e->hypothesis = NORMAL;
    e->last_update_ms = -1;
    e->reduce_after_ms = LLONG_MIN;
    e->reduce_below = -1;
    return 0;
}

static long long pymod(long long a, long long b) { return ((a % b) + b) % b; }

static void rate_reset(BitrateEstimator *e) {
    memset(e->counts, 0, sizeof(e->counts));
    memset(e->values, 0, sizeof(e->values));
    e->origin_index = 0;
    e->has_origin = 0;
    e->origin_ms = 0;
    e->total_count = e->total_value = 0;
}

static void rate_erase_old(BitrateEstimator *e, long long now_ms) {
    long long steps = now_ms - RATE_WINDOW + 1 - e->origin_ms;
    if (steps <= 0)
        return;
    int start = e->origin_index;
    if (steps >= RATE_WINDOW) {
        memset(e->counts, 0, sizeof(e->counts));
        memset(e->values, 0, sizeof(e->values));
        e->total_count = e->total_value = 0;
    } else {
        for (long long i = 0; i < steps; i++) {
            int j = (int)((start + i) % RATE_WINDOW);
            e->total_count -= e->counts[j];
            e->total_value -= e->values[j];
            e->counts[j] = e->values[j] = 0;
        }
    }
    e->origin_index = (int)pymod(start + steps, RATE_WINDOW);
    e->origin_ms += steps;
}

static void rate_put(BitrateEstimator *e, long long value, long long now_ms) {
    int index = (int)pymod(e->origin_index + now_ms - e->origin_ms, RATE_WINDOW);
    e->counts[index] += 1;
    e->values[index] += value;
    e->total_count += 1;
    e->total_value += value;
}

static void rate_add(BitrateEstimator *e, long long value, long long now_ms) {
    if (!e->has_origin) {
        e->has_origin = 1;
        e->origin_ms = now_ms;
    } else {
        rate_erase_old(e, now_ms);
    }
    rate_put(e, value, now_ms);
}

static int rate_observe(BitrateEstimator *e, long long value, long long now_ms) {
    /* rate() is not None, then add(): one expiry check */
    int had_rate;
    if (!e->has_origin) {
        e->has_origin = 1;
        e->origin_ms = now_ms;
        had_rate = 0;
    } else {
        if (now_ms - RATE_WINDOW + 1 - e->origin_ms > 0)
            rate_erase_old(e, now_ms);
        had_rate = e->total_count > 0 && now_ms > e->origin_ms;
    }
    rate_put(e, value, now_ms);
    return had_rate;
}

static long long rate_value(BitrateEstimator *e, long long now_ms) {
    /* RateCounter.rate(); -1: None */
    if (!e->has_origin)
        return -1;
    rate_erase_old(e, now_ms);
    long long active = now_ms - e->origin_ms + 1;
    if (e->total_count > 0 && active > 1)
        return (long long)rint((double)(RATE_SCALE * e->total_value) / (double)active);
    return -1;
}

static int uint32_gt(uint32_t a, uint32_t b) {
    const uint32_t half = 0x80000000u;
    return (a < b && b - a > half) || (a > b && a - b < half);
}

/* InterArrival.compute_deltas: 1 with the deltas set when a group closed. */
static int compute_deltas(BitrateEstimator *e, uint32_t timestamp, long long arrival,
                          long long size, uint32_t *d_timestamp, long long *d_arrival,
                          long long *d_size) {
    int deltas = 0;
    Group *cur = &e->current;
    if (!cur->open) {
        memset(cur, 0, sizeof(*cur));
        cur->open = 1;
        cur->first_timestamp = cur->last_timestamp = timestamp;
    } else if ((uint32_t)(timestamp - cur->first_timestamp) >= 0x80000000u) {
        return 0; /* out of order */
    } else {
        /* new_timestamp_group: not belongs_to_burst, and past the group's length */
        uint32_t ts_delta = timestamp - cur->last_timestamp;
        long long ts_delta_ms = (long long)rint(TIMESTAMP_TO_MS * ts_delta);
        long long arrival_delta = arrival - cur->arrival_time;
        int burst = ts_delta_ms == 0 ||
                    ((arrival_delta - ts_delta_ms) < 0 && arrival_delta <= BURST_DELTA_THRESHOLD_MS);
        if (!burst && (uint32_t)(timestamp - cur->first_timestamp) > GROUP_LENGTH) {
            if (e->previous.open) {
                *d_timestamp = cur->last_timestamp - e->previous.last_timestamp;
                *d_arrival = cur->arrival_time - e->previous.arrival_time;
                *d_size = cur->size - e->previous.size;
                deltas = 1;
            }
            e->previous = *cur;
            memset(cur, 0, sizeof(*cur));
            cur->open = 1;
            cur->first_timestamp = cur->last_timestamp = timestamp;
        } else if (uint32_gt(timestamp, cur->last_timestamp)) {
            cur->last_timestamp = timestamp;
        }
    }
    cur->size += size;
    cur->arrival_time = arrival;
    cur->has_arrival = 1;
    return deltas;
}

static void update_noise_estimate(BitrateEstimator *e, double residual, double ts_delta) {
    double alpha = 0.01;
    if (e->num_of_deltas > 10 * 30)
        alpha = 0.002;
    double beta = pow(1 - alpha, ts_delta * 30.0 / 1000.0);
    e->avg_noise = beta * e->avg_noise + (1 - beta) * residual;
    e->var_noise = beta * e->var_noise + (1 - beta) * pow(e->avg_noise - residual, 2.0);
    if (e->var_noise < 1)
        e->var_noise = 1;
}

static void estimator_update(BitrateEstimator *e, long long time_delta_ms,
                             double timestamp_delta_ms, long long size_delta, int hypothesis) {
    /* update_min_frame_period */
    double min_frame_period = timestamp_delta_ms;
    if (e->history_length >= FRAME_PERIOD_HISTORY) {
        memmove(e->history, e->history + 1, sizeof(double) * (FRAME_PERIOD_HISTORY - 1));
        e->history_length -= 1;
    }
    for (int i = 0; i < e->history_length; i++)
        if (e->history[i] < min_frame_period)
            min_frame_period = e->history[i];
    e->history[e->history_length++] = timestamp_delta_ms;

    double t_ts_delta = (double)time_delta_ms - timestamp_delta_ms;
    double h0 = (double)size_delta, h1 = 1.0;
    e->num_of_deltas = e->num_of_deltas + 1 < DELTA_COUNTER_MAX ? e->num_of_deltas + 1
                                                                 : DELTA_COUNTER_MAX;
    e->e00 += 1e-13;
    e->e11 += 1e-3;
    if ((hypothesis == OVERUSING && e->offset < e->previous_offset) ||
        (hypothesis == UNDERUSING && e->offset > e->previous_offset))
        e->e11 += 10 * 1e-3;
    double eh0 = e->e00 * h0 + e->e01 * h1;
    double eh1 = e->e10 * h0 + e->e11 * h1;
    double residual = t_ts_delta - e->slope * h0 - e->offset;
    if (hypothesis == NORMAL) {
        double max_residual = 3.0 * sqrt(e->var_noise);
        if (fabs(residual) < max_residual)
            update_noise_estimate(e, residual, min_frame_period);
        else
            update_noise_estimate(e, residual < 0 ? -max_residual : max_residual,
                                  min_frame_period);
    }
    double denom = e->var_noise + h0 * eh0 + h1 * eh1;
    double k0 = eh0 / denom, k1 = eh1 / denom;
    double ikh00 = 1.0 - k0 * h0, ikh01 = -k0 * h1, ikh10 = -k1 * h0, ikh11 = 1.0 - k1 * h1;
    double e00 = e->e00, e01 = e->e01;
    e->e00 = e00 * ikh00 + e->e10 * ikh01;
    e->e01 = e01 * ikh00 + e->e11 * ikh01;
    e->e10 = e00 * ikh10 + e->e10 * ikh11;
    e->e11 = e01 * ikh10 + e->e11 * ikh11;
    e->previous_offset = e->offset;
    e->slope += k0 * residual;
    e->offset += k1 * residual;
}

static void detector_update_threshold(BitrateEstimator *e, double modified_offset,
                                      long long now_ms) {
    if (!e->has_detector_update) {
        e->has_detector_update = 1;
        e->detector_update_ms = now_ms;
    }
    if (fabs(modified_offset) > e->threshold + MAX_ADAPT_OFFSET_MS) {
        e->detector_update_ms = now_ms;
        return;
    }
    double k = fabs(modified_offset) < e->threshold ? 0.039 : 0.0087;
    long long dt = now_ms - e->detector_update_ms;
    if (dt > 100)
        dt = 100;
    e->threshold += k * (fabs(modified_offset) - e->threshold) * (double)dt;
    if (e->threshold > 600)
        e->threshold = 600;
    if (e->threshold < 6)
        e->threshold = 6;
    e->detector_update_ms = now_ms;
}

static void detector_detect(BitrateEstimator *e, double offset, double timestamp_delta_ms,
                            int num_of_deltas, long long now_ms) {
    if (num_of_deltas < 2)
        return;
    double t = (num_of_deltas < MIN_NUM_DELTAS ? num_of_deltas : MIN_NUM_DELTAS) * offset;
    if (t > e->threshold) {
        if (!e->has_overuse_time) {
            e->has_overuse_time = 1;
            e->overuse_time = timestamp_delta_ms / 2;
        } else {
            e->overuse_time += timestamp_delta_ms;
        }
        e->overuse_counter += 1;
        if (e->overuse_time > 10 && e->overuse_counter > 1 &&
            offset >= e->detector_previous_offset) {
            e->overuse_counter = 0;
            e->overuse_time = 0;
            e->hypothesis = OVERUSING;
        }
    } else if (t < -e->threshold) {
        e->overuse_counter = 0;
        e->has_overuse_time = 0;
        e->hypothesis = UNDERUSING;
    } else {
        e->overuse_counter = 0;
        e->has_overuse_time = 0;
        e->hypothesis = NORMAL;
    }
    e->detector_previous_offset = offset;
    detector_update_threshold(e, t, now_ms);
}

#define ESTIMATE_NOT_DUE (-2)

/* One packet; ESTIMATE_NOT_DUE, or the rate control is due: the incoming rate (-1: none). */
static long long estimator_step(BitrateEstimator *e, long long arrival, uint32_t timestamp,
                                long long size, uint32_t ssrc) {
    int known = 0;
    for (int i = 0; i < e->ssrc_count; i++)
        if (e->ssrcs[i] == ssrc)
            known = 1;
    if (!known && e->ssrc_count < MAX_SSRCS)
        e->ssrcs[e->ssrc_count++] = ssrc;
    if (rate_observe(e, size, arrival)) {
        e->incoming_initialized = 1;
    } else if (e->incoming_initialized) {
        rate_reset(e);
        e->incoming_initialized = 0;
        rate_add(e, size, arrival);
    }
    uint32_t d_timestamp;
    long long d_arrival, d_size;
    if (compute_deltas(e, timestamp, arrival, size, &d_timestamp, &d_arrival, &d_size)) {
        double timestamp_delta_ms = d_timestamp * TIMESTAMP_TO_MS;
        estimator_update(e, d_arrival, timestamp_delta_ms, d_size, e->hypothesis);
        detector_detect(e, e->offset, timestamp_delta_ms, e->num_of_deltas, arrival);
    }
    if (e->last_update_ms < 0 || arrival - e->last_update_ms > FEEDBACK_INTERVAL_MS)
        return rate_value(e, arrival);
    if (e->hypothesis == OVERUSING) {
        long long incoming = rate_value(e, arrival);
        if (incoming < 0)
            return ESTIMATE_NOT_DUE;
        if (arrival >= e->reduce_after_ms ||
            (e->reduce_below >= 0 && (double)incoming < e->reduce_below))
            return incoming;
    }
    return ESTIMATE_NOT_DUE;
}

static PyObject *estimator_observe(BitrateEstimator *e, PyObject *const *args,
                                   Py_ssize_t nargs) {
    /* observe(arrival_ms, abs_send_time, payload_size, ssrc): None, or the rate control is
     * due: the incoming rate (bit/s; -1 for None) to update it with */
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "observe(arrival_ms, abs_send_time, size, ssrc)");
        return NULL;
    }
    long long arrival = PyLong_AsLongLong(args[0]);
    uint32_t timestamp = (uint32_t)(PyLong_AsUnsignedLongMask(args[1]) << 8);
    long long size = PyLong_AsLongLong(args[2]);
    uint32_t ssrc = (uint32_t)PyLong_AsUnsignedLongMask(args[3]);
    if (PyErr_Occurred())
        return NULL;
    long long incoming = estimator_step(e, arrival, timestamp, size, ssrc);
    if (incoming == ESTIMATE_NOT_DUE)
        Py_RETURN_NONE;
    return PyLong_FromLongLong(incoming);
}

static PyObject *estimator_ssrcs(BitrateEstimator *e, PyObject *unused) {
    PyObject *list = PyList_New(e->ssrc_count);
    if (list == NULL)
        return NULL;
    for (int i = 0; i < e->ssrc_count; i++) {
        PyObject *v = PyLong_FromUnsignedLong(e->ssrcs[i]);
        if (v == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, v);
    }
    return list;
}

static PyMethodDef estimator_methods[] = {
    {"observe", (PyCFunction)(void (*)(void))estimator_observe, METH_FASTCALL, NULL},
    {"ssrcs", (PyCFunction)estimator_ssrcs, METH_NOARGS,
     "The SSRCs seen, in the order first seen (at most 32)."},
    {NULL},
};

static PyMemberDef estimator_members[] = {
    {"hypothesis", T_INT, offsetof(BitrateEstimator, hypothesis), READONLY,
     "BandwidthUsage's value: 0 normal, 1 underusing, 2 overusing."},
    {"offset", T_DOUBLE, offsetof(BitrateEstimator, offset), READONLY, NULL},
    {"threshold", T_DOUBLE, offsetof(BitrateEstimator, threshold), READONLY, NULL},
    {"num_of_deltas", T_INT, offsetof(BitrateEstimator, num_of_deltas), READONLY, NULL},
    {"last_update_ms", T_LONGLONG, offsetof(BitrateEstimator, last_update_ms), 0,
     "When the rate control last gave an estimate (-1: never)."},
    {"reduce_after_ms", T_LONGLONG, offsetof(BitrateEstimator, reduce_after_ms), 0,
     "Under overuse, cut again from this time on (the last change plus an RTT)."},
    {"reduce_below", T_DOUBLE, offsetof(BitrateEstimator, reduce_below), 0,
     "Under overuse, cut at once when the incoming rate falls below this (< 0: never)."},
    {NULL},
};

static PyTypeObject BitrateEstimatorType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "protocol._rtpfast.BitrateEstimator",
    .tp_basicsize = sizeof(BitrateEstimator),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "aiortc's receive-side bandwidth estimate per packet (all but its rate control).",
    .tp_methods = estimator_methods,
    .tp_members = estimator_members,
    .tp_init = (initproc)estimator_init,
    .tp_new = PyType_GenericNew,
};

/* --- StreamStats -------------------------------------------------------------------------- */
/* aiortc's receiver-report statistics (rtcrtpreceiver.StreamStatistics) of one SSRC, with the
 * attributes and properties aiortc's reports and getStats() read, fed from the view. */

#define PACKETS_LOST_MIN (-0x800000)
#define PACKETS_LOST_MAX 0x7FFFFF

typedef struct {
    PyObject_HEAD
    int has_base, has_max, has_last;
    long long base_seq, max_seq, cycles, packets_received;
    long long clockrate, jitter_q4, last_arrival, last_timestamp;
    long long expected_prior, received_prior;
} StreamStats;

static PyTypeObject StreamStatsType;

static int stats_init(StreamStats *st, PyObject *args, PyObject *kwds) {
    long long clockrate;
    if (!PyArg_ParseTuple(args, "L", &clockrate))
        return -1;
    memset((char *)st + sizeof(PyObject), 0, sizeof(*st) - sizeof(PyObject));
    st->clockrate = clockrate;
    return 0;
}

static void stats_add(StreamStats *st, int seq, long long timestamp, double wall) {
    st->packets_received += 1;
    if (!st->has_base) {
        st->has_base = 1;
        st->base_seq = seq;
    }
    if (!st->has_max || (seq != st->max_seq && ((seq - st->max_seq) & 0xFFFF) < 0x8000)) {
        long long arrival = (long long)(wall * (double)st->clockrate);
        if (st->has_max && seq < st->max_seq)
            st->cycles += 1 << 16;
        st->has_max = 1;
        st->max_seq = seq;
        if (st->has_last && timestamp != st->last_timestamp && st->packets_received > 1) {
            long long diff = llabs((arrival - st->last_arrival) - (timestamp - st->last_timestamp));
            st->jitter_q4 += diff - ((st->jitter_q4 + 8) >> 4);
        }
        st->has_last = 1;
        st->last_arrival = arrival;
        st->last_timestamp = timestamp;
    }
}

static PyObject *stats_add_fields(StreamStats *st, PyObject *const *args, Py_ssize_t nargs) {
    /* add_fields(seq, timestamp, wall): one packet (aiortc's add() reads the clock itself) */
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "add_fields(seq, timestamp, wall)");
        return NULL;
    }
    long seq = PyLong_AsLong(args[0]);
    long long timestamp = PyLong_AsLongLong(args[1]);
    double wall = PyFloat_AsDouble(args[2]);
    if (PyErr_Occurred())
        return NULL;
    stats_add(st, (int)seq, timestamp, wall);
    Py_RETURN_NONE;
}

static PyObject *optional(int has, long long value) {
    if (!has)
        Py_RETURN_NONE;
    return PyLong_FromLongLong(value);
}

static long long stats_expected(StreamStats *st) {
    return st->cycles + st->max_seq - st->base_seq + 1;
}

static PyObject *stats_get_base_seq(StreamStats *st, void *c) { return optional(st->has_base, st->base_seq); }
static PyObject *stats_get_max_seq(StreamStats *st, void *c) { return optional(st->has_max, st->max_seq); }
static PyObject *stats_get_jitter(StreamStats *st, void *c) { return PyLong_FromLongLong(st->jitter_q4 >> 4); }
static PyObject *stats_get_expected(StreamStats *st, void *c) {
    if (!st->has_max) {
        PyErr_SetString(PyExc_ValueError, "no packet yet");
        return NULL;
    }
    return PyLong_FromLongLong(stats_expected(st));
}
static PyObject *stats_get_lost(StreamStats *st, void *c) {
    if (!st->has_max) {
        PyErr_SetString(PyExc_ValueError, "no packet yet");
        return NULL;
    }
    long long lost = stats_expected(st) - st->packets_received;
    if (lost < PACKETS_LOST_MIN)
        lost = PACKETS_LOST_MIN;
    if (lost > PACKETS_LOST_MAX)
        lost = PACKETS_LOST_MAX;
    return PyLong_FromLongLong(lost);
}
static PyObject *stats_get_fraction_lost(StreamStats *st, void *c) {
    /* as aiortc's: the share lost since the last report (and it starts the next interval) */
    if (!st->has_max) {
        PyErr_SetString(PyExc_ValueError, "no packet yet");
        return NULL;
    }
    long long expected = stats_expected(st);
    long long expected_interval = expected - st->expected_prior;
    st->expected_prior = expected;
    long long received_interval = st->packets_received - st->received_prior;
    st->received_prior = st->packets_received;
    long long lost_interval = expected_interval - received_interval;
    if (expected_interval == 0 || lost_interval <= 0)
        return PyLong_FromLong(0);
    return PyLong_FromLongLong((lost_interval << 8) / expected_interval);
}

static PyGetSetDef stats_getset[] = {
    {"base_seq", (getter)stats_get_base_seq, NULL, NULL, NULL},
    {"max_seq", (getter)stats_get_max_seq, NULL, NULL, NULL},
    {"jitter", (getter)stats_get_jitter, NULL, NULL, NULL},
    {"packets_expected", (getter)stats_get_expected, NULL, NULL, NULL},
    {"packets_lost", (getter)stats_get_lost, NULL, NULL, NULL},
    {"fraction_lost", (getter)stats_get_fraction_lost, NULL, NULL, NULL},
    {NULL},
};

static PyMemberDef stats_members[] = {
    {"cycles", T_LONGLONG, offsetof(StreamStats, cycles), READONLY, NULL},
    {"packets_received", T_LONGLONG, offsetof(StreamStats, packets_received), READONLY, NULL},
    {"_clockrate", T_LONGLONG, offsetof(StreamStats, clockrate), READONLY, NULL},
    {"_jitter_q4", T_LONGLONG, offsetof(StreamStats, jitter_q4), READONLY, NULL},
    {NULL},
};

static PyMethodDef stats_methods[] = {
    {"add_fields", (PyCFunction)(void (*)(void))stats_add_fields, METH_FASTCALL, NULL},
    {NULL},
};

static PyTypeObject StreamStatsType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "protocol._rtpfast.StreamStats",
    .tp_basicsize = sizeof(StreamStats),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "StreamStats(clockrate): aiortc's receiver-report statistics of one SSRC.",
    .tp_methods = stats_methods,
    .tp_members = stats_members,
    .tp_getset = stats_getset,
    .tp_init = (initproc)stats_init,
    .tp_new = PyType_GenericNew,
};

/* --- NackGenerator ------------------------------------------------------------------------ */
/* aiortc's NackGenerator (the sequence numbers missing, for NACKs), without its per-packet scan
 * of the missing set: a slack says how far the newest number may advance before the oldest
 * missing one could go stale. The same set (tests/test_packet_path.py). */

#define NACK_HISTORY 128 /* aiortc's RTP_HISTORY_SIZE */
#define NACK_CAPACITY 512

typedef struct {
    PyObject_HEAD
    int has_max;
    int max_seq;
    int slack;
    int count;
    uint16_t missing[NACK_CAPACITY];
} NackGenerator;

static int nack_init(NackGenerator *n, PyObject *args, PyObject *kwds) {
    if (!PyArg_ParseTuple(args, ""))
        return -1;
    n->has_max = 0;
    n->count = 0;
    n->slack = NACK_HISTORY;
    return 0;
}

static int nack_find(NackGenerator *n, int seq) {
    for (int i = 0; i < n->count; i++)
        if (n->missing[i] == seq)
            return i;
    return -1;
}

static int nack_prune(NackGenerator *n, int seq) {
    int oldest = 0, kept = 0;
    for (int i = 0; i < n->count; i++) {
        int behind = (seq - n->missing[i]) & 0xFFFF;
        if (NACK_HISTORY < behind && behind < NACK_HISTORY + 0x8000)
            continue; /* stale */
        if (behind > oldest)
            oldest = behind;
        n->missing[kept++] = n->missing[i];
    }
    n->count = kept;
    return NACK_HISTORY - oldest;
}

/* One sequence number; 1 when it opened a gap (a NACK is due). */
static int nack_add(NackGenerator *n, int seq) {
    if (!n->has_max) {
        n->has_max = 1;
        n->max_seq = seq;
        return 0;
    }
    int gap = (seq - n->max_seq) & 0xFFFF;
    if (0 < gap && gap < 0x8000) {
        int missed = gap > 1;
        int slack = n->slack - gap;
        if (missed) {
            int first = gap - 1 <= NACK_HISTORY ? gap - 1 : NACK_HISTORY;
            for (int i = 1; i <= first; i++) {
                int value = (seq - i) & 0xFFFF;
                if (nack_find(n, value) < 0 && n->count < NACK_CAPACITY)
                    n->missing[n->count++] = (uint16_t)value;
            }
            if (NACK_HISTORY - first < slack)
                slack = NACK_HISTORY - first;
        }
        n->max_seq = seq;
        if (slack < 0 && n->count)
            slack = nack_prune(n, seq);
        n->slack = n->count ? slack : NACK_HISTORY;
        return missed;
    }
    int at = nack_find(n, seq);
    if (at >= 0)
        n->missing[at] = n->missing[--n->count];
    return 0;
}

static PyObject *nack_py_add(NackGenerator *n, PyObject *packet) {
    /* add(packet): anything with a sequence_number; True when a NACK is due */
    PyObject *seq = PyObject_GetAttrString(packet, "sequence_number");
    if (seq == NULL)
        return NULL;
    long value = PyLong_AsLong(seq);
    Py_DECREF(seq);
    if (value == -1 && PyErr_Occurred())
        return NULL;
    return PyBool_FromLong(nack_add(n, (int)(value & 0xFFFF)));
}

static PyObject *nack_get_missing(NackGenerator *n, void *c) {
    PyObject *set = PySet_New(NULL);
    for (int i = 0; set != NULL && i < n->count; i++) {
        PyObject *v = PyLong_FromLong(n->missing[i]);
        if (v == NULL || PySet_Add(set, v) < 0) {
            Py_XDECREF(v);
            Py_CLEAR(set);
            break;
        }
        Py_DECREF(v);
    }
    return set;
}

static PyObject *nack_get_max_seq(NackGenerator *n, void *c) { return optional(n->has_max, n->max_seq); }

static PyGetSetDef nack_getset[] = {
    {"missing", (getter)nack_get_missing, NULL, "The missing sequence numbers (a new set).", NULL},
    {"max_seq", (getter)nack_get_max_seq, NULL, NULL, NULL},
    {NULL},
};

static PyMethodDef nack_methods[] = {
    {"add", (PyCFunction)nack_py_add, METH_O, NULL},
    {NULL},
};

static PyTypeObject NackGeneratorType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "protocol._rtpfast.NackGenerator",
    .tp_basicsize = sizeof(NackGenerator),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "aiortc's NackGenerator: the sequence numbers missing, for NACKs.",
    .tp_methods = nack_methods,
    .tp_getset = nack_getset,
    .tp_init = (initproc)nack_init,
    .tp_new = PyType_GenericNew,
};

/* --- ReceiverDuties ----------------------------------------------------------------------- */
/* What aiortc's receiver does per packet, on the lean path: the bandwidth estimate, the
 * receiver-report statistics, NACK bookkeeping; then the packet goes to the sink. RTX packets,
 * a due rate control and a due NACK are handed to Python callbacks. */

#define MAX_STREAMS 8

typedef struct {
    PyObject_HEAD
    int enabled;
    long long clock_rates[128]; /* payload type -> clock rate; 0: not negotiated */
    char rtx[128];              /* payload type is RTX */
    PyObject *streams;          /* aiortc's dict: ssrc -> statistics (StreamStats here) */
    uint32_t stream_ssrcs[MAX_STREAMS];
    StreamStats *stream_stats[MAX_STREAMS]; /* held: whatever becomes of aiortc's dict */
    int stream_count;
    BitrateEstimator *estimator; /* or NULL */
    NackGenerator *nack;         /* or NULL */
    PyObject *sink, *on_estimate, *on_rtx, *on_nack;
} ReceiverDuties;

static int duties_init(ReceiverDuties *d, PyObject *args, PyObject *kwds) {
    /* ReceiverDuties(pts: {pt: (clock_rate, is_rtx)}, streams: dict, estimator, nack,
     *                sink, on_estimate, on_rtx, on_nack) */
    PyObject *pts, *streams, *estimator, *nack, *sink, *on_estimate, *on_rtx, *on_nack;
    if (!PyArg_ParseTuple(args, "O!O!OOOOOO", &PyDict_Type, &pts, &PyDict_Type, &streams,
                          &estimator, &nack, &sink, &on_estimate, &on_rtx, &on_nack))
        return -1;
    if ((estimator != Py_None && Py_TYPE(estimator) != &BitrateEstimatorType) ||
        (nack != Py_None && Py_TYPE(nack) != &NackGeneratorType)) {
        PyErr_SetString(PyExc_TypeError, "a BitrateEstimator and a NackGenerator, or None");
        return -1;
    }
    memset(d->clock_rates, 0, sizeof(d->clock_rates));
    memset(d->rtx, 0, sizeof(d->rtx));
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(pts, &pos, &key, &value)) {
        long pt = PyLong_AsLong(key);
        long long rate;
        int is_rtx;
        if (pt < 0 || pt > 127 || !PyArg_ParseTuple(value, "Lp", &rate, &is_rtx)) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "a payload type is 0 to 127");
            return -1;
        }
        d->clock_rates[pt] = rate > 0 ? rate : 1;
        d->rtx[pt] = (char)is_rtx;
    }
    d->enabled = 1;
    for (int i = 0; i < d->stream_count; i++)
        Py_DECREF(d->stream_stats[i]);
    d->stream_count = 0;
    Py_INCREF(streams);
    Py_XSETREF(d->streams, streams);
    Py_XSETREF(d->estimator, estimator == Py_None ? NULL : (Py_INCREF(estimator), (BitrateEstimator *)estimator));
    Py_XSETREF(d->nack, nack == Py_None ? NULL : (Py_INCREF(nack), (NackGenerator *)nack));
    Py_INCREF(sink);
    Py_XSETREF(d->sink, sink);
    Py_INCREF(on_estimate);
    Py_XSETREF(d->on_estimate, on_estimate);
    Py_INCREF(on_rtx);
    Py_XSETREF(d->on_rtx, on_rtx);
    Py_INCREF(on_nack);
    Py_XSETREF(d->on_nack, on_nack);
    return 0;
}

static void duties_dealloc(ReceiverDuties *d) {
    for (int i = 0; i < d->stream_count; i++)
        Py_DECREF(d->stream_stats[i]);
    Py_XDECREF(d->streams);
    Py_XDECREF(d->estimator);
    Py_XDECREF(d->nack);
    Py_XDECREF(d->sink);
    Py_XDECREF(d->on_estimate);
    Py_XDECREF(d->on_rtx);
    Py_XDECREF(d->on_nack);
    Py_TYPE(d)->tp_free((PyObject *)d);
}

static StreamStats *duties_stream(ReceiverDuties *d, uint32_t ssrc, long long clock_rate) {
    for (int i = 0; i < d->stream_count; i++)
        if (d->stream_ssrcs[i] == ssrc)
            return d->stream_stats[i];
    PyObject *key = PyLong_FromUnsignedLong(ssrc);
    if (key == NULL)
        return NULL;
    PyObject *found = PyDict_GetItemWithError(d->streams, key); /* borrowed */
    StreamStats *st;
    if (found != NULL && Py_TYPE(found) == &StreamStatsType) {
        st = (StreamStats *)found;
    } else if (found != NULL || PyErr_Occurred()) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "a stream's statistics are not StreamStats");
        Py_DECREF(key);
        return NULL;
    } else {
        st = PyObject_New(StreamStats, &StreamStatsType);
        if (st == NULL) {
            Py_DECREF(key);
            return NULL;
        }
        memset((char *)st + sizeof(PyObject), 0, sizeof(*st) - sizeof(PyObject));
        st->clockrate = clock_rate;
        int failed = PyDict_SetItem(d->streams, key, (PyObject *)st);
        Py_DECREF(st); /* the dict holds it */
        if (failed) {
            Py_DECREF(key);
            return NULL;
        }
    }
    Py_DECREF(key);
    if (d->stream_count < MAX_STREAMS) {
        Py_INCREF(st);
        d->stream_ssrcs[d->stream_count] = ssrc;
        d->stream_stats[d->stream_count++] = st;
    }
    return st;
}

static PyObject *duties_handle(ReceiverDuties *d, PyObject *arg) {
    /* handle(view): one received packet */
    if (Py_TYPE(arg) != &RtpViewType) {
        PyErr_SetString(PyExc_TypeError, "handle(view: RtpView)");
        return NULL;
    }
    RtpView *v = (RtpView *)arg;
    if (!d->enabled)
        Py_RETURN_NONE;
    if (d->estimator != NULL && v->abs_send_time != NULL && v->abs_send_time != Py_None &&
        v->payload != NULL && PyBytes_Check(v->payload)) {
        /* the estimator's own step, without building its arguments as Python objects */
        long ast = PyLong_AsLong(v->abs_send_time);
        if (ast == -1 && PyErr_Occurred())
            return NULL;
        long long incoming =
            estimator_step(d->estimator, v->arrival_ms, (uint32_t)((unsigned long)ast << 8),
                           PyBytes_GET_SIZE(v->payload), v->ssrc);
        if (incoming != ESTIMATE_NOT_DUE) {
            PyObject *r = PyObject_CallFunction(d->on_estimate, "LL", incoming, v->arrival_ms);
            if (r == NULL)
                return NULL;
            Py_DECREF(r);
        }
    }
    int pt = v->payload_type & 0x7F;
    long long clock_rate = d->clock_rates[pt];
    if (!clock_rate)
        Py_RETURN_NONE;
    StreamStats *st = duties_stream(d, v->ssrc, clock_rate);
    if (st == NULL)
        return NULL;
    stats_add(st, v->sequence_number, v->timestamp, v->wall);
    if (d->rtx[pt])
        return PyObject_CallOneArg(d->on_rtx, arg); /* unwrapped, NACK-checked and sunk there */
    if (d->nack != NULL && nack_add(d->nack, v->sequence_number & 0xFFFF)) {
        PyObject *r = PyObject_CallOneArg(d->on_nack, arg);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    }
    if (d->sink == Py_None)
        Py_RETURN_NONE;
    return PyObject_CallOneArg(d->sink, arg);
}

static PyMemberDef duties_members[] = {
    {"enabled", T_INT, offsetof(ReceiverDuties, enabled), 0, NULL},
    {"sink", T_OBJECT, offsetof(ReceiverDuties, sink), 0, NULL},
    {NULL},
};

static PyMethodDef duties_methods[] = {
    {"handle", (PyCFunction)duties_handle, METH_O, NULL},
    {NULL},
};

static PyTypeObject ReceiverDutiesType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "protocol._rtpfast.ReceiverDuties",
    .tp_basicsize = sizeof(ReceiverDuties),
    .tp_dealloc = (destructor)duties_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "What aiortc's receiver does per packet, on the lean path.",
    .tp_methods = duties_methods,
    .tp_members = duties_members,
    .tp_init = (initproc)duties_init,
    .tp_new = PyType_GenericNew,
};

/* --- LegReceiver ---------------------------------------------------------------------------- */

/* A load client's receive step (bench/leanleg.py): what arrives on a leg's socket, counted
 * per stream without a Python call per packet. RTP headers are in clear in SRTP, so one packet
 * in `verify_every` is authenticated and decrypted (every other one is counted from its
 * header, less the trailer length the verified ones showed); a relay sending anything SRTP
 * refuses still shows up in `bad`. RTCP goes to `on_rtcp` (protected), anything not RTP or
 * RTCP to `on_other(protocol, data, addr)` (aioice), and a gap in a stream to
 * `on_gap(ssrc, last_seq, gap)` (the client's NACK). */

#define LEG_STREAMS 16
enum { LEG_VIDEO = 0, LEG_AUDIO = 1, LEG_RTX = 2, LEG_UNKNOWN = -1 };

typedef struct {
    unsigned int ssrc;
    int max_seq;
    int base;
    long long received;
    int has_ts;
    unsigned int ts_last;
    long long ts_wraps;
} LegStream;

typedef struct {
    PyObject_HEAD
    PyObject *session;
    srtp_fn unprotect;
    void *ctx;
    signed char kinds[128];
    int verify_every;
    int max_gap;
    double video_clock;
    long long count;
    int trailer; /* the SRTP trailer length; -1 until a packet was verified */
    long long packets[2], bytes[2], frames, verified, bad, failed;
    LegStream streams[LEG_STREAMS];
    int nstreams;
    PyObject *frame_delays; /* list */
    PyObject *on_rtcp, *on_other, *on_gap;
    unsigned char buffer[BUFFER_SIZE];
} LegReceiver;

static int leg_init(LegReceiver *r, PyObject *args, PyObject *kwds) {
    /* LegReceiver(session, unprotect, ctx, kinds: {pt: 0 video | 1 audio | 2 rtx},
     *             verify_every, max_gap, video_clock, frame_delays: list,
     *             on_rtcp, on_gap, on_other) */
    PyObject *session, *fn, *ctx, *kinds, *delays, *on_rtcp, *on_other, *on_gap;
    int verify_every, max_gap;
    double video_clock;
    if (!PyArg_ParseTuple(args, "OO!O!O!iidO!OOO", &session, &PyLong_Type, &fn, &PyLong_Type,
                          &ctx, &PyDict_Type, &kinds, &verify_every, &max_gap, &video_clock,
                          &PyList_Type, &delays, &on_rtcp, &on_gap, &on_other))
        return -1;
    if (verify_every < 1 || max_gap < 1 || video_clock <= 0) {
        PyErr_SetString(PyExc_ValueError, "verify_every, max_gap and video_clock must be > 0");
        return -1;
    }
    r->unprotect = (srtp_fn)PyLong_AsVoidPtr(fn);
    r->ctx = PyLong_AsVoidPtr(ctx);
    if (PyErr_Occurred())
        return -1;
    memset(r->kinds, LEG_UNKNOWN, sizeof(r->kinds));
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(kinds, &pos, &key, &value)) {
        long pt = PyLong_AsLong(key), kind = PyLong_AsLong(value);
        if (PyErr_Occurred())
            return -1;
        if (pt < 0 || pt > 127 || kind < LEG_VIDEO || kind > LEG_RTX) {
            PyErr_SetString(PyExc_ValueError, "kinds: payload type 0-127 to 0, 1 or 2");
            return -1;
        }
        r->kinds[pt] = (signed char)kind;
    }
    r->verify_every = verify_every;
    r->max_gap = max_gap;
    r->video_clock = video_clock;
    r->trailer = -1;
    Py_INCREF(session);
    Py_XSETREF(r->session, session);
    Py_INCREF(delays);
    Py_XSETREF(r->frame_delays, delays);
    Py_INCREF(on_rtcp);
    Py_XSETREF(r->on_rtcp, on_rtcp);
    Py_INCREF(on_other);
    Py_XSETREF(r->on_other, on_other);
    Py_INCREF(on_gap);
    Py_XSETREF(r->on_gap, on_gap);
    return 0;
}

static int leg_traverse(LegReceiver *r, visitproc visit, void *arg) {
    Py_VISIT(r->frame_delays);
    Py_VISIT(r->on_rtcp);
    Py_VISIT(r->on_other);
    Py_VISIT(r->on_gap);
    return 0;
}

static int leg_clear(LegReceiver *r) {
    Py_CLEAR(r->frame_delays);
    Py_CLEAR(r->on_rtcp);
    Py_CLEAR(r->on_other);
    Py_CLEAR(r->on_gap);
    return 0;
}

static void leg_dealloc(LegReceiver *r) {
    PyObject_GC_UnTrack(r);
    leg_clear(r);
    Py_XDECREF(r->session);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static LegStream *leg_stream(LegReceiver *r, unsigned int ssrc) {
    for (int i = 0; i < r->nstreams; i++)
        if (r->streams[i].ssrc == ssrc)
            return &r->streams[i];
    return NULL;
}

static int leg_count(LegReceiver *r, const unsigned char *data, Py_ssize_t n, int trailer) {
    /* one RTP packet, plain (trailer 0) or protected with its header in clear; -1 on error */
    int kind = r->kinds[data[1] & 0x7F];
    if (kind == LEG_UNKNOWN)
        return 0;
    int seq = (data[2] << 8) | data[3];
    unsigned int ts = ((unsigned int)data[4] << 24) | (data[5] << 16) | (data[6] << 8) | data[7];
    unsigned int ssrc =
        ((unsigned int)data[8] << 24) | (data[9] << 16) | (data[10] << 8) | data[11];
    Py_ssize_t pos = 12 + 4 * (data[0] & 0x0F);
    if ((data[0] & 0x10) && n >= pos + 4)
        pos += 4 + 4 * ((data[pos + 2] << 8) | data[pos + 3]);
    Py_ssize_t end = n - trailer - ((data[0] & 0x20) && !trailer ? data[n - 1] : 0);
    LegStream *s = leg_stream(r, ssrc);
    if (kind == LEG_RTX) { /* a retransmission: counted as the stream it repairs */
        kind = LEG_VIDEO;
        pos += 2;
    } else if (s == NULL) {
        if (r->nstreams < LEG_STREAMS) {
            s = &r->streams[r->nstreams++];
            memset(s, 0, sizeof(*s));
            s->ssrc = ssrc;
            s->max_seq = s->base = seq;
            s->received = 1;
        } /* past LEG_STREAMS streams: counted, not followed */
    } else {
        int gap = (seq - s->max_seq) & 0xFFFF;
        if (gap > 0 && gap < 0x8000) {
            int last = s->max_seq;
            s->max_seq = seq;
            if (gap > 1 && gap <= r->max_gap) {
                PyObject *res = PyObject_CallFunction(r->on_gap, "Iii", ssrc, last, gap);
                if (res == NULL)
                    return -1;
                Py_DECREF(res);
            }
        }
        s->received++;
    }
    r->packets[kind]++;
    if (end > pos)
        r->bytes[kind] += end - pos;
    if ((data[1] & 0x80) && kind == LEG_VIDEO && s != NULL) {
        r->frames++;
        if (s->has_ts && ts < s->ts_last && s->ts_last - ts > (1u << 31))
            s->ts_wraps++;
        s->has_ts = 1;
        s->ts_last = ts;
        double rtp_s = ((double)ts + (double)(s->ts_wraps << 32)) / r->video_clock;
        PyObject *delay = PyFloat_FromDouble(clock_seconds(CLOCK_MONOTONIC) - rtp_s);
        if (delay == NULL)
            return -1;
        int failed = PyList_Append(r->frame_delays, delay);
        Py_DECREF(delay);
        if (failed)
            return -1;
    }
    return 0;
}

static PyObject *leg_receive(LegReceiver *r, PyObject *const *args) {
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(args[1]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[1]);
    if (n < 12 || data[0] < 128 || data[0] > 191)
        return PyObject_Vectorcall(r->on_other, args, 3, NULL);
    if (data[1] >= 192 && data[1] <= 223)
        return PyObject_CallOneArg(r->on_rtcp, args[1]);
    r->count++;
    if (r->trailer >= 0 && r->count % r->verify_every) {
        if (n < 12 + r->trailer)
            r->bad++;
        else if (leg_count(r, data, n, r->trailer) < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    if (n > PLAIN_LIMIT) {
        r->bad++;
        Py_RETURN_NONE;
    }
    memcpy(r->buffer, data, n);
    int length = (int)n;
    if (r->unprotect(r->ctx, r->buffer, &length) != 0 || length < 12) {
        r->bad++;
        Py_RETURN_NONE;
    }
    r->verified++;
    r->trailer = (int)n - length;
    if (leg_count(r, r->buffer, length, 0) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *leg_datagram(LegReceiver *r, PyObject *const *args, Py_ssize_t nargs) {
    /* datagram(protocol, data, addr): installed (bound with functools.partial) as the leg's
     * socket protocol's datagram_received. A callback's error is counted in `failed` and
     * does not reach the event loop (the first one is printed): one datagram is lost, never
     * the socket. */
    if (nargs != 3 || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "datagram(protocol, data: bytes, addr)");
        return NULL;
    }
    PyObject *res = leg_receive(r, args);
    if (res != NULL)
        return res;
    if (r->failed++ == 0)
        PyErr_WriteUnraisable((PyObject *)r);
    else
        PyErr_Clear();
    Py_RETURN_NONE;
}

static PyObject *leg_counts(LegReceiver *r, PyObject *unused) {
    /* {"video": packets, "audio": packets}, {"video": bytes, "audio": bytes}, video frames */
    return Py_BuildValue("{sLsL}{sLsL}L", "video", r->packets[LEG_VIDEO], "audio",
                         r->packets[LEG_AUDIO], "video", r->bytes[LEG_VIDEO], "audio",
                         r->bytes[LEG_AUDIO], r->frames);
}

static PyObject *leg_streams(LegReceiver *r, PyObject *unused) {
    /* [(ssrc, base_seq, max_seq, received)] in the order the streams first arrived */
    PyObject *out = PyList_New(r->nstreams);
    if (out == NULL)
        return NULL;
    for (int i = 0; i < r->nstreams; i++) {
        LegStream *s = &r->streams[i];
        PyObject *item = Py_BuildValue("IiiL", s->ssrc, s->base, s->max_seq, s->received);
        if (item == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, item);
    }
    return out;
}

static PyMemberDef leg_members[] = {
    {"verified", T_LONGLONG, offsetof(LegReceiver, verified), READONLY, NULL},
    {"bad", T_LONGLONG, offsetof(LegReceiver, bad), READONLY, NULL},
    {"failed", T_LONGLONG, offsetof(LegReceiver, failed), READONLY, NULL},
    {NULL},
};

static PyMethodDef leg_methods[] = {
    {"datagram", (PyCFunction)(void (*)(void))leg_datagram, METH_FASTCALL, NULL},
    {"counts", (PyCFunction)leg_counts, METH_NOARGS, NULL},
    {"streams", (PyCFunction)leg_streams, METH_NOARGS, NULL},
    {NULL},
};

static PyTypeObject LegReceiverType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "protocol._rtpfast.LegReceiver",
    .tp_basicsize = sizeof(LegReceiver),
    .tp_dealloc = (destructor)leg_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A load client's receive step: counts what arrives on a leg's socket.",
    .tp_traverse = (traverseproc)leg_traverse,
    .tp_clear = (inquiry)leg_clear,
    .tp_methods = leg_methods,
    .tp_members = leg_members,
    .tp_init = (initproc)leg_init,
    .tp_new = PyType_GenericNew,
};

/* --- module ------------------------------------------------------------------------------- */

static PyMethodDef module_methods[] = {
    {"parse", (PyCFunction)(void (*)(void))parse, METH_FASTCALL,
     "parse(data, abs_id, level_id): the RtpView of a plain RTP packet, None if malformed."},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "protocol._rtpfast",
    .m_doc = "The relay's per-packet work in C.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__rtpfast(void) {
    if (PyType_Ready(&RtpViewType) < 0 || PyType_Ready(&ReceiverType) < 0 ||
        PyType_Ready(&SenderType) < 0 || PyType_Ready(&BitrateEstimatorType) < 0 ||
        PyType_Ready(&StreamStatsType) < 0 || PyType_Ready(&NackGeneratorType) < 0 ||
        PyType_Ready(&ReceiverDutiesType) < 0 || PyType_Ready(&LegReceiverType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "RtpView", (PyObject *)&RtpViewType) < 0 ||
        PyModule_AddObjectRef(m, "Receiver", (PyObject *)&ReceiverType) < 0 ||
        PyModule_AddObjectRef(m, "Sender", (PyObject *)&SenderType) < 0 ||
        PyModule_AddObjectRef(m, "BitrateEstimator", (PyObject *)&BitrateEstimatorType) < 0 ||
        PyModule_AddObjectRef(m, "StreamStats", (PyObject *)&StreamStatsType) < 0 ||
        PyModule_AddObjectRef(m, "NackGenerator", (PyObject *)&NackGeneratorType) < 0 ||
        PyModule_AddObjectRef(m, "ReceiverDuties", (PyObject *)&ReceiverDutiesType) < 0 ||
        PyModule_AddObjectRef(m, "LegReceiver", (PyObject *)&LegReceiverType) < 0 ||
        PyModule_AddIntConstant(m, "PLAIN_LIMIT", PLAIN_LIMIT) < 0 ||
        PyModule_AddIntConstant(m, "DROP_TOO_LONG", DROP_TOO_LONG) < 0 ||
        PyModule_AddIntConstant(m, "DROP_UNPROTECT", DROP_UNPROTECT) < 0 ||
        PyModule_AddIntConstant(m, "DROP_MALFORMED", DROP_MALFORMED) < 0 ||
        PyModule_AddIntConstant(m, "LATENCY_SAMPLE_EVERY", LATENCY_SAMPLE_EVERY) < 0 ||
        PyModule_AddIntConstant(m, "FEEDBACK_INTERVAL_MS", FEEDBACK_INTERVAL_MS) < 0 ||
        PyModule_AddIntConstant(m, "MAX_SSRCS", MAX_SSRCS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
