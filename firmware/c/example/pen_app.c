/* A minimal pen firmware on the generated protocol library: the application core.
   See pen_app.h for what the pen does and README.md for how it runs. */
#include "pen_app.h"

#include <string.h>

#define US_PER_MS 1000u
#define US_PER_S 1000000u
#define STROKE_UNITS 1000000000u /* mHz x us in one stroke */
#define TELEMETRY_CATCH_UP_US 100000u /* further behind than this: skip, do not burst */

/* The one cartridge of this pen, fitted for good: 12 needles on a 1.5 mm circle. */
#define CARTRIDGE_NEEDLES 12u
static const pen_needle_position_t cartridge_needles[CARTRIDGE_NEEDLES] = {
    {1500, 0},     {1299, 750},    {750, 1299},   {0, 1500},
    {-750, 1299},  {-1299, 750},   {-1500, 0},    {-1299, -750},
    {-750, -1299}, {0, -1500},     {750, -1299},  {1299, -750},
};
#define CARTRIDGE_ID "EX-CART-0001"
#define CARTRIDGE_LOT "LOT-EX-1"
#define CARTRIDGE_NEEDLE_LENGTH_UM 2500u

/* The largest answers must fit a replay entry, or their retries would be executed again. */
#define WIRE_SIZE(payload) ((payload) + PEN_MIN_FRAME + ((payload) + PEN_MIN_FRAME) / 254u + 2u)
_Static_assert(WIRE_SIZE(PEN_DEVICE_INFO_MAX_PAYLOAD) <= PEN_APP_REPLAY_ANSWER_MAX,
               "DEVICE_INFO does not fit a replay entry");
_Static_assert(WIRE_SIZE(38u + PEN_NEEDLE_POSITION_SIZE * CARTRIDGE_NEEDLES) <=
                   PEN_APP_REPLAY_ANSWER_MAX,
               "this pen's CARTRIDGE does not fit a replay entry");
_Static_assert(PEN_APP_REPLAY_REQUEST_MAX <= 255u, "request lengths are kept in a byte");

/* -- small helpers ------------------------------------------------------------------------ */

static void copy_text(char *dst, size_t size, const char *src)
{
    size_t n = 0;
    if (src) {
        while (n < size && src[n] != '\0') {
            dst[n] = src[n];
            n++;
        }
    }
    dst[n < size ? n : size - 1u] = '\0';
}

static uint64_t uptime_us(const pen_app_t *app) { return app->uptime_ms * US_PER_MS; }

static void ack(pen_message_t *answer, uint8_t request_id)
{
    memset(answer, 0, sizeof *answer);
    answer->msg_id = PEN_MSG_ACK;
    answer->body.ack.request_id = request_id;
}

static void nack(pen_message_t *answer, uint8_t request_id, pen_error_code_t code,
                 int32_t detail)
{
    memset(answer, 0, sizeof *answer);
    answer->msg_id = PEN_MSG_NACK;
    answer->body.nack.request_id = request_id;
    answer->body.nack.code = (uint8_t)code;
    answer->body.nack.detail = detail;
}

/* -- sending ------------------------------------------------------------------------------- */

/* Encode one frame into app->wire and write it; its length (0 if it could not be encoded). */
static size_t send_frame(pen_app_t *app, uint16_t seq, uint8_t flags, const pen_message_t *message)
{
    size_t length = 0;
    if (pen_encode_frame(seq, flags, message, app->wire, sizeof app->wire, &length) != PEN_OK) {
        app->counters.send_errors++;
        return 0;
    }
    if (message->msg_id == PEN_MSG_NACK) {
        app->counters.nacks_sent++;
    }
    app->config.write(app->config.write_context, app->wire, length);
    return length;
}

/* An answer: the request's sequence number, RESPONSE set. */
static size_t respond(pen_app_t *app, uint16_t seq, const pen_message_t *answer)
{
    return send_frame(app, seq, PEN_FLAG_RESPONSE, answer);
}

/* An unsolicited frame (FAULT, HEARTBEAT, TELEMETRY): the pen's own counter. */
static void emit(pen_app_t *app, const pen_message_t *message)
{
    send_frame(app, app->seq++, 0, message);
}

static void emit_fault(pen_app_t *app, uint16_t fault, bool active, int32_t detail)
{
    pen_message_t message;
    memset(&message, 0, sizeof message);
    message.msg_id = PEN_MSG_FAULT;
    message.body.fault.fault = fault;
    message.body.fault.active = active ? 1u : 0u;
    message.body.fault.device_time_us = uptime_us(app);
    message.body.fault.detail = active ? detail : 0;
    emit(app, &message);
}

/* -- the simulated motor ------------------------------------------------------------------- */

/* Fold the strokes up to t into stroke_base and run on at rate_mhz from t. */
static void motor_set(pen_app_t *app, uint32_t rate_mhz, uint64_t t_us)
{
    if (t_us > app->motor_since_us) {
        uint64_t units =
            app->stroke_frac + (uint64_t)app->motor_rate_mhz * (t_us - app->motor_since_us);
        app->stroke_base += units / STROKE_UNITS;
        app->stroke_frac = units % STROKE_UNITS;
        app->motor_since_us = t_us;
    }
    app->motor_rate_mhz = rate_mhz;
}

static uint32_t strokes_at(const pen_app_t *app, uint64_t t_us)
{
    uint64_t strokes = app->stroke_base;
    if (t_us > app->motor_since_us) {
        strokes += (app->stroke_frac +
                    (uint64_t)app->motor_rate_mhz * (t_us - app->motor_since_us)) /
                   STROKE_UNITS;
    }
    return (uint32_t)strokes; /* the wire's counter wraps at 2^32 */
}

static void stop_motor(pen_app_t *app)
{
    motor_set(app, 0, uptime_us(app));
    if (app->state == PEN_STATE_RUNNING) {
        app->state = PEN_STATE_IDLE;
    }
}

/* -- the requests -------------------------------------------------------------------------- */

static void telemetry_restart(pen_app_t *app, uint16_t rate_hz)
{
    app->telemetry_hz = rate_hz;
    app->telemetry_epoch_us = uptime_us(app) + (rate_hz ? US_PER_S / rate_hz : 0u);
    app->telemetry_index = 0;
}

static void replay_clear(pen_app_t *app)
{
    memset(app->replay, 0, sizeof app->replay);
}

static void hello(pen_app_t *app, pen_message_t *answer)
{
    /* A new session: answers remembered from an earlier one must never be replayed. The
       host's protocol version and schema hash do not matter here: the answer says ours, and
       the host decides (a wrong layout is refused message by message, SCHEMA_MISMATCH). */
    replay_clear(app);
    pen_device_info_t *info = &answer->body.device_info;
    memset(answer, 0, sizeof *answer);
    answer->msg_id = PEN_MSG_DEVICE_INFO;
    copy_text(info->model, sizeof info->model, PEN_APP_MODEL);
    copy_text(info->serial_number, sizeof info->serial_number, app->config.serial_number);
    info->firmware_major = PEN_APP_FIRMWARE_MAJOR;
    info->firmware_minor = PEN_APP_FIRMWARE_MINOR;
    info->firmware_patch = PEN_APP_FIRMWARE_PATCH;
    info->protocol_version = PEN_PROTOCOL_VERSION;
    info->schema_hash = PEN_SCHEMA_HASH;
    info->capabilities = PEN_APP_CAPABILITIES;
    info->depth_min_um = PEN_APP_DEPTH_MIN_UM;
    info->depth_max_um = PEN_APP_DEPTH_MAX_UM;
    info->depth_step_um = PEN_APP_DEPTH_STEP_UM;
    info->rate_min_mhz = PEN_APP_RATE_MIN_MHZ;
    info->rate_max_mhz = PEN_APP_RATE_MAX_MHZ;
    info->rate_step_mhz = PEN_APP_RATE_STEP_MHZ;
    info->telemetry_rate_hz = app->telemetry_hz;
    info->watchdog_ms = app->config.watchdog_ms;
    info->telemetry_max_hz = PEN_APP_TELEMETRY_MAX_HZ;
}

static void get_status(pen_app_t *app, pen_message_t *answer)
{
    pen_status_t *status = &answer->body.status;
    memset(answer, 0, sizeof *answer);
    answer->msg_id = PEN_MSG_STATUS;
    status->state = (uint8_t)app->state;
    status->fault_flags = app->fault_flags;
    status->depth_setpoint_um = app->depth_setpoint_um;
    status->rate_setpoint_mhz = app->rate_setpoint_mhz;
    status->cartridge_state = app->cartridge_state;
    status->battery_mv = 0; /* mains powered: no BATTERY capability */
    status->battery_percent = 0;
    status->uptime_us = uptime_us(app);
    status->stroke_count = strokes_at(app, uptime_us(app));
    status->telemetry_rate_hz = app->telemetry_hz;
}

static void get_cartridge(pen_app_t *app, pen_message_t *answer)
{
    pen_cartridge_t *cartridge = &answer->body.cartridge;
    memset(answer, 0, sizeof *answer);
    answer->msg_id = PEN_MSG_CARTRIDGE;
    cartridge->state = app->cartridge_state;
    if (!app->config.cartridge_fitted) {
        return; /* ABSENT, everything else empty */
    }
    copy_text(cartridge->cartridge_id, sizeof cartridge->cartridge_id, CARTRIDGE_ID);
    copy_text(cartridge->lot, sizeof cartridge->lot, CARTRIDGE_LOT);
    cartridge->expiry_day = 0; /* none */
    cartridge->needle_length_um = CARTRIDGE_NEEDLE_LENGTH_UM;
    cartridge->layout = (uint8_t)PEN_NEEDLE_LAYOUT_CIRCLE;
    cartridge->needles_count = (uint8_t)CARTRIDGE_NEEDLES;
    memcpy(cartridge->needles, cartridge_needles, sizeof cartridge_needles);
}

/* The grid rule of docs/PROTOCOL.md ("Depth limits"): below or above the range, NACK
   OUT_OF_RANGE naming the limit crossed; off the step, NOT_ON_STEP naming the step. */
static bool off_grid(uint32_t value, uint32_t low, uint32_t high, uint32_t step, uint8_t id,
                     pen_message_t *answer)
{
    if (value < low) {
        nack(answer, id, PEN_ERROR_CODE_OUT_OF_RANGE, (int32_t)low);
    } else if (value > high) {
        nack(answer, id, PEN_ERROR_CODE_OUT_OF_RANGE, (int32_t)high);
    } else if (step && (value - low) % step) {
        nack(answer, id, PEN_ERROR_CODE_NOT_ON_STEP, (int32_t)step);
    } else {
        return false;
    }
    return true;
}

static void set_depth(pen_app_t *app, const pen_set_depth_t *request, pen_message_t *answer)
{
    uint8_t id = PEN_MSG_SET_DEPTH;
    if (off_grid(request->depth_um, PEN_APP_DEPTH_MIN_UM, PEN_APP_DEPTH_MAX_UM,
                 PEN_APP_DEPTH_STEP_UM, id, answer)) {
        return;
    }
    /* The needles never go deeper than they are long; with no cartridge, only the grid. */
    if (app->config.cartridge_fitted && request->depth_um > CARTRIDGE_NEEDLE_LENGTH_UM) {
        nack(answer, id, PEN_ERROR_CODE_OUT_OF_RANGE, (int32_t)CARTRIDGE_NEEDLE_LENGTH_UM);
        return;
    }
    app->depth_setpoint_um = request->depth_um;
    ack(answer, id);
}

static void set_stroke_rate(pen_app_t *app, const pen_set_stroke_rate_t *request,
                            pen_message_t *answer)
{
    uint8_t id = PEN_MSG_SET_STROKE_RATE;
    if (off_grid(request->rate_mhz, PEN_APP_RATE_MIN_MHZ, PEN_APP_RATE_MAX_MHZ,
                 PEN_APP_RATE_STEP_MHZ, id, answer)) {
        return;
    }
    app->rate_setpoint_mhz = request->rate_mhz;
    if (app->state == PEN_STATE_RUNNING) {
        motor_set(app, request->rate_mhz, uptime_us(app));
    }
    ack(answer, id);
}

static void start(pen_app_t *app, pen_message_t *answer)
{
    uint8_t id = PEN_MSG_START;
    /* The refusals in order: a latched fault first (a safety stop is undone only by
       CLEAR_FAULTS, never by START), then the cartridge, then the depth against it. */
    if (app->fault_flags || app->state == PEN_STATE_FAULT) {
        nack(answer, id, PEN_ERROR_CODE_FAULT_ACTIVE, (int32_t)app->fault_flags);
        return;
    }
    if (!app->config.cartridge_fitted) {
        nack(answer, id, PEN_ERROR_CODE_NO_CARTRIDGE, 0);
        return;
    }
    if (app->depth_setpoint_um > CARTRIDGE_NEEDLE_LENGTH_UM) {
        nack(answer, id, PEN_ERROR_CODE_OUT_OF_RANGE, (int32_t)CARTRIDGE_NEEDLE_LENGTH_UM);
        return;
    }
    /* Started; or already running, and then nothing changes (START carries no set point). */
    app->state = PEN_STATE_RUNNING;
    app->cartridge_state = (uint8_t)PEN_CARTRIDGE_STATE_IN_USE;
    motor_set(app, app->rate_setpoint_mhz, uptime_us(app));
    ack(answer, id);
}

static void clear_faults(pen_app_t *app, pen_message_t *answer)
{
    /* Nothing in this pen has a cause that persists: every latched fault is cleared, each
       announced with a FAULT active = 0, and FAULT becomes IDLE. */
    for (uint16_t bit = 1; bit != 0; bit = (uint16_t)(bit << 1)) {
        if (app->fault_flags & bit) {
            app->fault_flags = (uint16_t)(app->fault_flags & ~bit);
            emit_fault(app, bit, false, 0);
        }
    }
    if (app->state == PEN_STATE_FAULT) {
        app->state = PEN_STATE_IDLE;
    }
    ack(answer, PEN_MSG_CLEAR_FAULTS);
}

static void set_telemetry(pen_app_t *app, const pen_set_telemetry_t *request,
                          pen_message_t *answer)
{
    if (request->rate_hz > PEN_APP_TELEMETRY_MAX_HZ) {
        nack(answer, PEN_MSG_SET_TELEMETRY, PEN_ERROR_CODE_OUT_OF_RANGE,
             (int32_t)PEN_APP_TELEMETRY_MAX_HZ);
        return;
    }
    telemetry_restart(app, request->rate_hz);
    ack(answer, PEN_MSG_SET_TELEMETRY);
}

/* Execute one request and put its answer (a response or a NACK) in *answer. */
static void execute(pen_app_t *app, const pen_message_t *request, pen_message_t *answer)
{
    app->counters.requests_executed++;
    switch (request->msg_id) {
    case PEN_MSG_HELLO:
        hello(app, answer);
        break;
    case PEN_MSG_GET_STATUS:
        get_status(app, answer);
        break;
    case PEN_MSG_GET_CARTRIDGE:
        get_cartridge(app, answer);
        break;
    case PEN_MSG_SET_DEPTH:
        set_depth(app, &request->body.set_depth, answer);
        break;
    case PEN_MSG_SET_STROKE_RATE:
        set_stroke_rate(app, &request->body.set_stroke_rate, answer);
        break;
    case PEN_MSG_START:
        start(app, answer);
        break;
    case PEN_MSG_STOP:
        stop_motor(app); /* always accepted, also when stopped or in FAULT */
        ack(answer, PEN_MSG_STOP);
        break;
    case PEN_MSG_SET_TELEMETRY:
        set_telemetry(app, &request->body.set_telemetry, answer);
        break;
    case PEN_MSG_CLEAR_FAULTS:
        clear_faults(app, answer);
        break;
    case PEN_MSG_CALIBRATION_READ:
    case PEN_MSG_CALIBRATION_WRITE:
    case PEN_MSG_CALIBRATION_COMMIT:
    case PEN_MSG_CALIBRATION_DISCARD:
        /* Known, but this pen has no calibration: say which capability it lacks. */
        nack(answer, request->msg_id, PEN_ERROR_CODE_UNSUPPORTED,
             (int32_t)PEN_CAPABILITY_CALIBRATION);
        break;
    default:
        /* A request of a newer schema this firmware was not written for: to the host it is
           as unknown as to an older pen. */
        nack(answer, request->msg_id, PEN_ERROR_CODE_UNKNOWN_MESSAGE, request->msg_id);
        break;
    }
}

/* -- the replay cache (docs/PROTOCOL.md, "Sequence numbers, retries and at-most-once
      execution") --------------------------------------------------------------------------- */

/* Requests that may run again when a retry outlived its entry: STOP, and what actuates
   nothing (firmware_protocol.replay.SAFE_TO_REPEAT). */
static bool safe_to_repeat(uint8_t msg_id)
{
    switch (msg_id) {
    case PEN_MSG_STOP:
    case PEN_MSG_HELLO:
    case PEN_MSG_GET_STATUS:
    case PEN_MSG_GET_CARTRIDGE:
    case PEN_MSG_CALIBRATION_READ:
    case PEN_MSG_SET_TELEMETRY:
        return true;
    default:
        return false;
    }
}

static pen_app_replay_entry_t *replay_find(pen_app_t *app, uint16_t seq, uint8_t msg_id)
{
    for (size_t i = 0; i < PEN_APP_REPLAY_ENTRIES; i++) {
        pen_app_replay_entry_t *entry = &app->replay[i];
        if (entry->used && entry->seq == seq && entry->msg_id == msg_id) {
            return entry;
        }
    }
    return NULL;
}

static void replay_remember(pen_app_t *app, uint16_t seq, uint8_t msg_id,
                            const uint8_t *request, size_t request_length,
                            const uint8_t *answer, size_t answer_length)
{
    pen_app_replay_entry_t *entry = replay_find(app, seq, msg_id);
    if (answer_length > PEN_APP_REPLAY_ANSWER_MAX) {
        if (entry) {
            entry->used = false; /* never leave an older answer under this key */
        }
        return;
    }
    if (!entry) {
        entry = &app->replay[0];
        for (size_t i = 0; i < PEN_APP_REPLAY_ENTRIES; i++) {
            if (!app->replay[i].used) {
                entry = &app->replay[i];
                break;
            }
            if (app->replay[i].order < entry->order) {
                entry = &app->replay[i]; /* the oldest goes first */
            }
        }
    }
    entry->used = true;
    entry->seq = seq;
    entry->msg_id = msg_id;
    entry->request_length = (uint8_t)request_length;
    memcpy(entry->request, request, request_length);
    entry->answer_length = (uint16_t)answer_length;
    memcpy(entry->answer, answer, answer_length);
    entry->at_ms = app->uptime_ms;
    entry->order = app->replay_order++;
}

/* -- receiving ----------------------------------------------------------------------------- */

static void on_request(pen_app_t *app, const pen_event_t *event)
{
    const pen_message_t *request = &event->message;
    uint16_t seq = event->header.seq;
    pen_message_t answer;

    /* The request as this schema encodes it: two copies with the same content compare
       equal, whatever extension bytes a newer host appended. Too long: not remembered. */
    uint8_t content[PEN_APP_REPLAY_REQUEST_MAX];
    size_t content_length = 0;
    bool rememberable =
        pen_encode_payload(request, content, sizeof content, &content_length) == PEN_OK;

    /* Only a RETRY is looked up: a frame without it is a new request, whatever the cache
       holds under its number (numbers wrap). */
    pen_app_replay_entry_t *entry = NULL;
    if ((event->header.flags & PEN_FLAG_RETRY) && rememberable) {
        entry = replay_find(app, seq, request->msg_id);
        if (entry && (entry->request_length != content_length ||
                      memcmp(entry->request, content, content_length) != 0)) {
            entry = NULL; /* the same number for another request: a new one */
        }
    }
    if (entry) {
        if (app->uptime_ms - entry->at_ms <= PEN_APP_REPLAY_EXPIRY_MS) {
            if (request->msg_id == PEN_MSG_STOP) {
                execute(app, request, &answer); /* STOP is always executed */
            }
            app->counters.requests_replayed++;
            app->config.write(app->config.write_context, entry->answer, entry->answer_length);
            return;
        }
        if (!safe_to_repeat(request->msg_id)) {
            /* Too old to vouch for: maybe a late copy of what ran, maybe a new request on a
               wrapped number. Nothing is done, nothing remembered; the host asks anew. */
            app->counters.retries_refused++;
            nack(&answer, request->msg_id, PEN_ERROR_CODE_INVALID_STATE, (int32_t)app->state);
            respond(app, seq, &answer);
            return;
        }
    }
    execute(app, request, &answer);
    size_t length = respond(app, seq, &answer);
    bool busy = answer.msg_id == PEN_MSG_NACK && answer.body.nack.code == PEN_ERROR_CODE_BUSY;
    if (length && rememberable && !busy) {
        /* Every answer is remembered, a NACK too (but BUSY, whose retry runs afresh). */
        replay_remember(app, seq, request->msg_id, content, content_length, app->wire, length);
    }
}

/* What the contract says to do with each event (docs/PROTOCOL.md, "What a pen does with
   each"), decided by the library: execute a request, NACK a frame the pen cannot act on, or
   drop the rest (answers, non-requests, anything corrupted). */
static void on_event(pen_app_t *app, const pen_event_t *event)
{
    pen_message_t refusal;
    if (event->kind == PEN_EVENT_MESSAGE) {
        /* A valid frame, whatever it holds: it alone feeds the watchdog (a host's HEARTBEAT
           asks for nothing else). */
        app->last_valid_ms = app->uptime_ms;
    }
    if (pen_event_is_request(event)) {
        on_request(app, event);
    } else if (pen_event_nack(event, &refusal)) {
        /* Another version or flag, an unknown id, another layout, a malformed payload. */
        respond(app, event->header.seq, &refusal);
    } else if (event->kind != PEN_EVENT_NONE && event->kind != PEN_EVENT_OVERSIZE
               && event->kind != PEN_EVENT_BAD_FRAMING && event->kind != PEN_EVENT_BAD_CRC
               && event->kind != PEN_EVENT_LENGTH_MISMATCH
               && !(event->kind == PEN_EVENT_MESSAGE
                    && event->message.msg_id == PEN_MSG_HEARTBEAT
                    && !(event->header.flags & PEN_FLAG_RESPONSE))) {
        /* An intact frame that is an answer or no request: dropped, never answered.
           (Corrupted frames are only counted, by the receiver.) */
        app->counters.frames_not_answered++;
    }
}

void pen_app_receive_byte(pen_app_t *app, uint8_t byte)
{
    if (pen_receiver_push(&app->receiver, byte, &app->event)) {
        on_event(app, &app->event);
    }
}

void pen_app_receive(pen_app_t *app, const uint8_t *data, size_t length)
{
    for (size_t i = 0; i < length; i++) {
        pen_app_receive_byte(app, data[i]);
    }
}

/* -- time ---------------------------------------------------------------------------------- */

static void send_telemetry(pen_app_t *app, uint64_t at_us)
{
    pen_message_t message;
    pen_telemetry_t *t = &message.body.telemetry;
    memset(&message, 0, sizeof message);
    message.msg_id = PEN_MSG_TELEMETRY;
    t->device_time_us = at_us;
    t->depth_setpoint_um = app->depth_setpoint_um;
    t->depth_measured_um = (int16_t)app->depth_setpoint_um; /* no actuator to lag behind */
    t->stroke_rate_mhz = app->motor_rate_mhz;
    t->stroke_count = strokes_at(app, at_us);
    t->motor_current_ma = app->motor_rate_mhz ? PEN_APP_MOTOR_CURRENT_MA : 0u;
    t->battery_mv = 0;
    t->state = (uint8_t)app->state;
    t->fault_flags = app->fault_flags;
    emit(app, &message);
    app->counters.telemetry_sent++;
}

void pen_app_tick(pen_app_t *app, uint32_t now_ms)
{
    app->uptime_ms += (uint32_t)(now_ms - app->last_tick_ms); /* wraps cleanly */
    app->last_tick_ms = now_ms;
    uint64_t now_us = uptime_us(app);

    /* TELEMETRY: each sample stamped when it was due, as a timer interrupt would take it. */
    while (app->telemetry_hz) {
        uint64_t due = app->telemetry_epoch_us +
                       (uint64_t)app->telemetry_index * US_PER_S / app->telemetry_hz;
        if (due > now_us) {
            break;
        }
        if (due + TELEMETRY_CATCH_UP_US < now_us) {
            /* The clock stalled (a debugger, a suspended host): no burst to catch up. */
            app->telemetry_epoch_us = due = now_us;
            app->telemetry_index = 0;
        }
        send_telemetry(app, due);
        app->telemetry_index++;
        if (app->telemetry_index == app->telemetry_hz) { /* a whole second: rebase */
            app->telemetry_epoch_us += US_PER_S;
            app->telemetry_index = 0;
        }
    }

    /* The watchdog acts only while the motor runs. */
    uint64_t silent_ms = app->uptime_ms - app->last_valid_ms;
    if (app->state == PEN_STATE_RUNNING && silent_ms >= app->config.watchdog_ms) {
        stop_motor(app);
        app->fault_flags |= (uint16_t)PEN_FAULT_FLAGS_WATCHDOG;
        app->state = PEN_STATE_FAULT;
        app->counters.watchdog_stops++;
        emit_fault(app, (uint16_t)PEN_FAULT_FLAGS_WATCHDOG, true, (int32_t)silent_ms);
    }

    if (app->uptime_ms >= app->next_heartbeat_ms) {
        pen_message_t message;
        memset(&message, 0, sizeof message);
        message.msg_id = PEN_MSG_HEARTBEAT;
        message.body.heartbeat.uptime_us = now_us;
        message.body.heartbeat.state = (uint8_t)app->state;
        emit(app, &message);
        app->next_heartbeat_ms = app->uptime_ms + PEN_APP_HEARTBEAT_PERIOD_MS;
    }
}

/* -- power on ------------------------------------------------------------------------------ */

void pen_app_init(pen_app_t *app, const pen_app_config_t *config, uint32_t now_ms)
{
    memset(app, 0, sizeof *app);
    app->config = *config;
    if (app->config.watchdog_ms == 0) {
        app->config.watchdog_ms = PEN_APP_WATCHDOG_DEFAULT_MS;
    }
    pen_receiver_init(&app->receiver);
    app->last_tick_ms = now_ms;
    app->state = PEN_STATE_IDLE;
    app->depth_setpoint_um = PEN_APP_DEPTH_DEFAULT_UM;
    app->rate_setpoint_mhz = PEN_APP_RATE_DEFAULT_MHZ;
    app->cartridge_state = (uint8_t)(config->cartridge_fitted ? PEN_CARTRIDGE_STATE_NEW
                                                              : PEN_CARTRIDGE_STATE_ABSENT);
    app->next_heartbeat_ms = PEN_APP_HEARTBEAT_PERIOD_MS;
    telemetry_restart(app, PEN_APP_TELEMETRY_DEFAULT_HZ);
}

const pen_link_stats_t *pen_app_link_stats(const pen_app_t *app)
{
    return &app->receiver.stats;
}
