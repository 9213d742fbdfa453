/* A minimal pen firmware on the generated protocol library: the portable application core.

   Everything a pen does with the protocol is here, and nothing about the board: bytes come
   in through pen_app_receive_byte, time through pen_app_tick, and every frame the pen sends
   goes out, whole, through the write callback of its configuration. Freestanding C11: no
   allocation, no stdio, only the library's headers and string.h. See README.md for how it
   maps onto a microcontroller (a UART and a timer) and pen_posix.c for a host that serves
   it on a pseudo-terminal.

   The pen it implements (docs/PROTOCOL.md is the contract):
   - HELLO -> DEVICE_INFO; GET_STATUS -> STATUS; GET_CARTRIDGE -> CARTRIDGE (one cartridge,
     fitted for good, 12 needles of 2.5 mm);
   - SET_DEPTH (200-3000 um, step 100, and no deeper than the needles) and SET_STROKE_RATE
     (50-150 Hz, step 1 Hz), refused naming the limit crossed or the step;
   - START / STOP of a simulated motor (strokes counted at the set rate), the watchdog (a
     running pen that hears no valid frame for watchdog_ms stops, latches WATCHDOG and sends
     FAULT), CLEAR_FAULTS;
   - TELEMETRY at 0-1000 Hz (SET_TELEMETRY), its own HEARTBEAT every second;
   - a replay cache, so that a retried request is executed at most once;
   - CALIBRATION_* refused NACK UNSUPPORTED (detail: the CALIBRATION capability it lacks). */
#ifndef PEN_APP_H
#define PEN_APP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pen_protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What this pen is. */
#define PEN_APP_MODEL "MN-Example"
#define PEN_APP_FIRMWARE_MAJOR 0u
#define PEN_APP_FIRMWARE_MINOR 1u
#define PEN_APP_FIRMWARE_PATCH 0u
#define PEN_APP_CAPABILITIES \
    ((uint32_t)PEN_CAPABILITY_TELEMETRY | (uint32_t)PEN_CAPABILITY_VARIABLE_RATE | \
     (uint32_t)PEN_CAPABILITY_CARTRIDGE_ID)
#define PEN_APP_DEPTH_MIN_UM 200u
#define PEN_APP_DEPTH_MAX_UM 3000u
#define PEN_APP_DEPTH_STEP_UM 100u
#define PEN_APP_DEPTH_DEFAULT_UM 500u
#define PEN_APP_RATE_MIN_MHZ 50000u
#define PEN_APP_RATE_MAX_MHZ 150000u
#define PEN_APP_RATE_STEP_MHZ 1000u
#define PEN_APP_RATE_DEFAULT_MHZ 100000u
#define PEN_APP_TELEMETRY_DEFAULT_HZ 50u
#define PEN_APP_WATCHDOG_DEFAULT_MS 500u
#define PEN_APP_MOTOR_CURRENT_MA 180u /* what the simulated motor draws while running */

/* Figures of the protocol (docs/PROTOCOL.md), from the generated header. */
#define PEN_APP_TELEMETRY_MAX_HZ PEN_TELEMETRY_MAX_HZ /* the protocol's fastest TELEMETRY */
#define PEN_APP_HEARTBEAT_PERIOD_MS PEN_HEARTBEAT_PERIOD_MS /* the pen's own HEARTBEAT */
#define PEN_APP_REPLAY_EXPIRY_MS PEN_REPLAY_EXPIRY_MS

/* The replay cache: the answers to the last few requests, for their retries. An entry holds
   the request's payload (re-encoded, so that equal messages compare equal) and the answer
   frame as sent. Requests or answers longer than these bounds are not remembered, so their
   retries are executed: only CALIBRATION_WRITE is that long, and this pen refuses it
   whatever it holds. */
#define PEN_APP_REPLAY_ENTRIES 8u
#define PEN_APP_REPLAY_REQUEST_MAX PEN_HELLO_MAX_PAYLOAD /* the longest request it answers */
#define PEN_APP_REPLAY_ANSWER_MAX 128u /* DEVICE_INFO and this pen's CARTRIDGE fit */

/* Send these bytes (always one whole frame, delimiter included) to the host. */
typedef void (*pen_app_write_fn)(void *context, const uint8_t *data, size_t length);

typedef struct {
    const char *serial_number; /* at most 16 bytes of UTF-8 */
    uint16_t watchdog_ms; /* 0: PEN_APP_WATCHDOG_DEFAULT_MS */
    bool cartridge_fitted; /* false: no cartridge (SET_DEPTH checks only the grid) */
    pen_app_write_fn write;
    void *write_context;
} pen_app_config_t;

typedef struct {
    uint32_t frames_not_answered; /* intact frames that asked for no answer (see pen_app.c) */
    uint32_t requests_executed;
    uint32_t requests_replayed; /* retries answered from the replay cache */
    uint32_t retries_refused; /* retries of expired entries, not safe to repeat */
    uint32_t nacks_sent;
    uint32_t telemetry_sent;
    uint32_t watchdog_stops;
    uint32_t send_errors; /* frames the library refused to encode: a bug, stays 0 */
} pen_app_counters_t;

typedef struct {
    bool used;
    uint16_t seq;
    uint8_t msg_id;
    uint8_t request_length;
    uint8_t request[PEN_APP_REPLAY_REQUEST_MAX];
    uint16_t answer_length;
    uint8_t answer[PEN_APP_REPLAY_ANSWER_MAX];
    uint64_t at_ms;
    uint32_t order; /* when it was remembered: the oldest goes first */
} pen_app_replay_entry_t;

/* The whole pen. Treat it as opaque: the fields are here so that it can be a static
   variable (no allocation), not to be written from outside. */
typedef struct {
    pen_app_config_t config;
    pen_receiver_t receiver;
    pen_event_t event; /* the receiver's last event (kept here, not on the stack) */
    uint8_t wire[PEN_MAX_WIRE]; /* the frame being sent */

    /* Time: pen_app_tick's clock turned into time since boot (it may wrap; this does not). */
    uint32_t last_tick_ms;
    uint64_t uptime_ms;

    /* The pen. */
    pen_state_t state;
    uint16_t fault_flags; /* pen_fault_flags_t bits, latched until CLEAR_FAULTS */
    uint16_t depth_setpoint_um;
    uint32_t rate_setpoint_mhz;
    uint8_t cartridge_state; /* a pen_cartridge_state_t */
    uint16_t seq; /* the pen's own counter, for unsolicited frames */

    /* The simulated motor: strokes = stroke_base + (stroke_frac + rate x (t - since)) / 1e9,
       rate in mHz and t in us (one stroke is 1e9 mHz-us). */
    uint32_t motor_rate_mhz; /* 0: stopped */
    uint64_t motor_since_us;
    uint64_t stroke_base;
    uint64_t stroke_frac;

    /* Timers. */
    uint64_t last_valid_ms; /* the last valid frame (the watchdog) */
    uint64_t next_heartbeat_ms;
    uint16_t telemetry_hz; /* 0: off */
    uint64_t telemetry_epoch_us; /* samples are due at epoch + k x 1e6 / telemetry_hz */
    uint32_t telemetry_index;

    pen_app_replay_entry_t replay[PEN_APP_REPLAY_ENTRIES];
    uint32_t replay_order;

    pen_app_counters_t counters;
} pen_app_t;

/* Power on: IDLE, default set points, telemetry at PEN_APP_TELEMETRY_DEFAULT_HZ. now_ms is
   the clock pen_app_tick will be given (any origin; it may wrap). */
void pen_app_init(pen_app_t *app, const pen_app_config_t *config, uint32_t now_ms);

/* One byte from the host. A completed frame is handled at once: its answer, if it gets one,
   is written before this returns. Time is that of the last pen_app_tick. */
void pen_app_receive_byte(pen_app_t *app, uint8_t byte);
void pen_app_receive(pen_app_t *app, const uint8_t *data, size_t length);

/* The clock, in milliseconds (monotonic; wraps at 2^32): call it every millisecond or so.
   Runs the watchdog, sends TELEMETRY and HEARTBEAT when due. */
void pen_app_tick(pen_app_t *app, uint32_t now_ms);

/* What arrived: the library's receive counters (bad CRC, oversize, ...). */
const pen_link_stats_t *pen_app_link_stats(const pen_app_t *app);

#ifdef __cplusplus
}
#endif

#endif /* PEN_APP_H */
