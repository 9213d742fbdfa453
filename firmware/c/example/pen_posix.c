/* The example pen on a POSIX host: its "board support" is a pseudo-terminal and a clock.

   pen_posix [--serial SN] [--watchdog-ms N] [--no-cartridge]

   Opens a pseudo-terminal, prints its name on stdout as one line ("pty /dev/pts/7"), and
   serves the pen on it until SIGTERM or SIGINT, then exits 0. A host opens that name as a
   serial port: pytest --pen-url /dev/pts/7, pen status --url /dev/pts/7.

   This file stands where a microcontroller's UART driver and timer would: bytes read from
   the pseudo-terminal go to pen_app_receive_byte (the UART receive interrupt's job), a poll()
   loop that wakes every millisecond calls pen_app_tick with a monotonic clock (the timer's),
   and the pen's frames go out through a bounded queue (the UART transmit buffer). */
#define _XOPEN_SOURCE 700 /* posix_openpt, grantpt, unlockpt, ptsname */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "pen_app.h"

#define OUTPUT_CAPACITY 16384u /* the transmit buffer: frames beyond it are dropped whole */
#define TICK_MS 1 /* the poll() timeout: a 1 kHz tick */

static volatile sig_atomic_t stop_requested = 0;

static void on_signal(int signal_number)
{
    (void)signal_number;
    stop_requested = 1;
}

/* What the pen has sent and the pseudo-terminal has not yet taken. A frame is queued whole
   or not at all, so a host that reads too slowly loses frames, never parts of frames. */
typedef struct {
    int fd;
    uint8_t data[OUTPUT_CAPACITY];
    size_t length;
    unsigned long frames_dropped;
} output_t;

static void output_flush(output_t *out)
{
    while (out->length) {
        ssize_t written = write(out->fd, out->data, out->length);
        if (written <= 0) {
            return; /* EAGAIN: full (nobody reading, say); poll() says when it drains */
        }
        memmove(out->data, out->data + written, out->length - (size_t)written);
        out->length -= (size_t)written;
    }
}

static void output_write(void *context, const uint8_t *data, size_t length)
{
    output_t *out = context;
    if (length > sizeof out->data - out->length) {
        out->frames_dropped++;
        return;
    }
    memcpy(out->data + out->length, data, length);
    out->length += length;
    output_flush(out);
}

static uint32_t monotonic_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint32_t)((uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u);
}

/* Raw mode, by the POSIX flags (cfmakeraw is not POSIX): bytes pass untouched, no echo. */
static int make_raw(int fd)
{
    struct termios tio;
    if (tcgetattr(fd, &tio) != 0) {
        return -1;
    }
    tio.c_iflag &= (tcflag_t) ~(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
    tio.c_oflag &= (tcflag_t)~OPOST;
    tio.c_lflag &= (tcflag_t) ~(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
    tio.c_cflag &= (tcflag_t) ~(CSIZE | PARENB);
    tio.c_cflag |= CS8;
    tio.c_cc[VMIN] = 1;
    tio.c_cc[VTIME] = 0;
    return tcsetattr(fd, TCSANOW, &tio);
}

static int usage(const char *program)
{
    fprintf(stderr, "usage: %s [--serial SN] [--watchdog-ms N] [--no-cartridge]\n", program);
    return 2;
}

int main(int argc, char **argv)
{
    pen_app_config_t config = {"EX-000001", PEN_APP_WATCHDOG_DEFAULT_MS, true, output_write, NULL};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--serial") == 0 && i + 1 < argc && strlen(argv[i + 1]) <= 16) {
            config.serial_number = argv[++i];
        } else if (strcmp(argv[i], "--watchdog-ms") == 0 && i + 1 < argc) {
            char *end = NULL;
            long ms = strtol(argv[++i], &end, 10);
            if (*end != '\0' || ms < 1 || ms > 65535) {
                return usage(argv[0]);
            }
            config.watchdog_ms = (uint16_t)ms;
        } else if (strcmp(argv[i], "--no-cartridge") == 0) {
            config.cartridge_fitted = false;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: %s [--serial SN] [--watchdog-ms N] [--no-cartridge]\n"
                   "Serves the example pen on a new pseudo-terminal, whose path it prints\n"
                   "first (\"pty /dev/pts/N\"); SIGTERM or Ctrl-C stops it.\n",
                   argv[0]);
            return 0;
        } else {
            return usage(argv[0]);
        }
    }

    /* The pseudo-terminal: the master is the pen's end. The slave stays open here too, so
       the master reads nothing (rather than failing with EIO) while no host has it open. */
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) {
        perror("pen_posix: posix_openpt");
        return 1;
    }
    const char *name = ptsname(master);
    int slave = name ? open(name, O_RDWR | O_NOCTTY) : -1;
    if (slave < 0 || make_raw(slave) != 0) {
        perror("pen_posix: the slave side of the pseudo-terminal");
        return 1;
    }
    int flags = fcntl(master, F_GETFL);
    if (flags < 0 || fcntl(master, F_SETFL, flags | O_NONBLOCK) != 0) {
        perror("pen_posix: fcntl");
        return 1;
    }

    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_signal; /* no SA_RESTART: poll() returns EINTR at once */
    sigemptyset(&action.sa_mask);
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);

    static output_t out; /* static: 16 KB is no stack variable */
    static pen_app_t app;
    out.fd = master;
    config.write_context = &out;
    pen_app_init(&app, &config, monotonic_ms());

    printf("pty %s\n", name);
    fflush(stdout);

    while (!stop_requested) {
        struct pollfd fds = {master, (short)(POLLIN | (out.length ? POLLOUT : 0)), 0};
        if (poll(&fds, 1, TICK_MS) < 0) {
            if (errno == EINTR) {
                continue;
            }
            perror("pen_posix: poll");
            return 1;
        }
        pen_app_tick(&app, monotonic_ms());
        if (fds.revents & POLLIN) {
            uint8_t chunk[512];
            ssize_t got = read(master, chunk, sizeof chunk);
            if (got > 0) {
                pen_app_receive(&app, chunk, (size_t)got);
            }
        }
        output_flush(&out);
    }

    const pen_link_stats_t *link = pen_app_link_stats(&app);
    const pen_app_counters_t *c = &app.counters;
    fprintf(stderr,
            "pen_posix: %lu frames ok, %lu bad CRC, %lu bad framing, %lu length mismatch, "
            "%lu oversize, %lu unsupported, %lu unknown, %lu schema mismatch, %lu malformed; "
            "%lu requests executed, %lu replayed, %lu retries refused, %lu not answered, "
            "%lu NACKs, %lu telemetry, %lu watchdog stops, %lu frames dropped, "
            "%lu send errors\n",
            (unsigned long)link->frames_ok, (unsigned long)link->bad_crc,
            (unsigned long)link->bad_framing, (unsigned long)link->length_mismatch,
            (unsigned long)link->oversize, (unsigned long)link->unsupported,
            (unsigned long)link->unknown_message, (unsigned long)link->schema_mismatch,
            (unsigned long)link->malformed, (unsigned long)c->requests_executed,
            (unsigned long)c->requests_replayed, (unsigned long)c->retries_refused,
            (unsigned long)c->frames_not_answered, (unsigned long)c->nacks_sent,
            (unsigned long)c->telemetry_sent, (unsigned long)c->watchdog_stops,
            out.frames_dropped, (unsigned long)c->send_errors);
    close(slave);
    close(master);
    return 0;
}
