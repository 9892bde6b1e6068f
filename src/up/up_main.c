/*
 * up_main.c - `switchyard up`: a local cluster supervisor.
 *
 * It picks free ports (bind 127.0.0.1:0), starts every engine (fork + exec of this same binary,
 * /proc/self/exe), waits until each answers GET /health with 200, starts the gateway with one
 * --endpoint per engine (KV-event endpoint and role included), waits until its /health is 200 and
 * its /v1/models lists the model, prints the addresses, then supervises until SIGINT or SIGTERM.
 * Each child writes stdout and stderr to LOG_DIR/<name>.log. Signals arrive on a signalfd
 * (SIGINT, SIGTERM, SIGHUP unless ignored, SIGCHLD), which a poll() loop watches with a short
 * timeout that also paces the readiness probes and the stop deadlines.
 *
 * Cluster state machine (up_ctx_t.state):
 *
 *   STARTING ──every child ready──▶ READY ──SIGINT/SIGTERM──▶ STOPPING ──all reaped──▶ DONE
 *      │                                 │                       ▲
 *      └──a child exits / times out──────┴──a child dies─────────┘ (exit code 1)
 *
 *   | from     | to       | performed by   | event                                            |
 *   | STARTING | READY    | step_starting  | the gateway's /health is 200 and lists the model |
 *   | STARTING | STOPPING | begin_stop     | signal; a child exited; a ready deadline passed  |
 *   | READY    | STOPPING | begin_stop     | signal; a child died (reported with its log)     |
 *   | STOPPING | DONE     | step_stopping  | every child reaped                               |
 *
 * Invariants: STARTING: the gateway is spawned only once every engine is READY. READY: every
 * child is READY. STOPPING: phase GATEWAY until the gateway is reaped (engines untouched, so its
 * in-flight requests can finish), then phase ENGINES (all SIGTERMed at once); a child still
 * running stop_timeout after its SIGTERM is SIGKILLed (with its process group); a second signal
 * SIGKILLs everything at once. DONE: no child is left (up_proc_destroy would SIGKILL and reap
 * one anyway).
 *
 * Choices: a child that dies while the cluster runs stops the whole cluster with exit code 1
 * (a partial cluster would serve with a silently lower capacity and the process that watches
 * `up` would never know); a child that exits with a non-zero status, or has to be SIGKILLed,
 * while stopping also makes the exit code 1.
 * Does not: restart children, reload the cluster file, or listen anywhere but 127.0.0.1.
 * Thread-safety: main thread only.
 */
#include "up/up_main.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/cli.h"
#include "common/log.h"
#include "common/status.h"
#include "engine/sim_exec.h"
#include "gateway/gw_sched.h"
#include "http/http_parse.h"
#include "up/up_config.h"
#include "up/up_proc.h"

#define UP_PROBE_EVERY_MS 100 /* readiness probes per child */
#define UP_PROBE_TIMEOUT_MS 1000
#define UP_TICK_MS 50 /* poll timeout while starting or stopping */
#define UP_IDLE_MS 1000
#define UP_TAIL_LINES 20
#define UP_HTTP_MAX (1u << 20)
#define UP_DEFAULT_STOP_TIMEOUT 10.0

typedef enum up_state {
    UP_STARTING = 0,
    UP_READY = 1,
    UP_STOPPING = 2,
    UP_DONE = 3,
} up_state_t;

typedef enum up_stop_phase {
    UP_STOP_GATEWAY = 0,
    UP_STOP_ENGINES = 1,
} up_stop_phase_t;

/* One child: an engine (kids[0..n_engines)) or the gateway (kids[n_engines]). */
typedef struct up_child {
    char name[32];
    char log[UP_PATH_MAX];
    up_addr_t addr;
    up_proc_t *proc; /* owned; NULL until spawned */
    uint64_t spawn_ms;
    uint64_t next_probe_ms;
    char last_probe[UP_NAME_MAX + 96]; /* why the last readiness probe failed */
} up_child_t;

typedef struct up_ctx {
    up_config_t cfg;
    up_state_t state;
    up_stop_phase_t phase;
    char exe[UP_PATH_MAX];
    char log_dir[UP_PATH_MAX];
    up_child_t *kids; /* owned: n_engines + 1 */
    size_t n_engines;
    int sigfd;
    double stop_timeout;
    int exit_code;
    const char *stop_reason; /* static text */
} up_ctx_t;

static void up_assert_state(const up_ctx_t *c)
{
    SY_ASSERT(c->state >= UP_STARTING && c->state <= UP_DONE);
    up_child_t *gw = &c->kids[c->n_engines];
    if (c->state == UP_STARTING && gw->proc)
        for (size_t i = 0; i < c->n_engines; i++)
            SY_ASSERT(c->kids[i].proc && up_proc_state(c->kids[i].proc) == UPP_READY);
    if (c->state == UP_READY)
        for (size_t i = 0; i <= c->n_engines; i++)
            SY_ASSERT(c->kids[i].proc && up_proc_state(c->kids[i].proc) == UPP_READY);
    if (c->state == UP_DONE)
        for (size_t i = 0; i <= c->n_engines; i++)
            SY_ASSERT(!c->kids[i].proc || up_proc_state(c->kids[i].proc) == UPP_EXITED);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ------------------------------------------------------------------------------------------ */
/* ports and a tiny blocking HTTP client for the readiness probes (loopback only)              */

/* Fills ports[0..n) with distinct free TCP ports of 127.0.0.1: all n sockets are held while the
 * kernel picks, then closed. ST_OK or -errno. */
static int pick_ports(int *ports, size_t n)
{
    int fds[2 * UP_MAX_ENGINES + 1];
    size_t opened = 0;
    int rc = ST_OK;
    SY_ASSERT(n <= sizeof fds / sizeof fds[0]);
    for (; opened < n; opened++) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t al = sizeof a;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
            getsockname(fd, (struct sockaddr *)&a, &al) < 0) {
            rc = -errno;
            if (fd >= 0)
                close(fd);
            break;
        }
        fds[opened] = fd;
        ports[opened] = ntohs(a.sin_port);
    }
    for (size_t i = 0; i < opened; i++)
        close(fds[i]);
    return rc;
}

/* ST_OK when 127.0.0.1:port can be bound right now (nobody listens there), else -errno. */
static int port_available(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1, rc = ST_OK;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
        rc = -errno;
    close(fd);
    return rc;
}

/* Waits for events on fd until deadline; ST_OK, ST_TIMEOUT or -errno. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
    for (;;) {
        uint64_t t = now_ms();
        if (t >= deadline)
            return ST_TIMEOUT;
        struct pollfd pfd = {.fd = fd, .events = events};
        int r = poll(&pfd, 1, (int)(deadline - t));
        if (r > 0)
            return ST_OK;
        if (r == 0)
            return ST_TIMEOUT;
        if (errno != EINTR)
            return -errno;
    }
}

/* GET http://127.0.0.1:port<path> (Connection: close) within timeout_ms. On ST_OK *status holds
 * the HTTP status and body (may be NULL) the response body (Content-Length or up to EOF).
 * Otherwise ST_TIMEOUT, ST_PROTO or -errno (-ECONNREFUSED while nothing listens). */
static int http_get(int port, const char *path, int timeout_ms, int *status, sy_buf_t *body)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    sy_buf_t in = SY_BUF_INIT;
    char req[256];
    int rc = ST_OK;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        if (errno != EINPROGRESS) {
            rc = -errno;
            goto fail;
        }
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if ((rc = wait_fd(fd, POLLOUT, deadline)) != ST_OK)
            goto fail;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr) {
            rc = -(soerr ? soerr : errno);
            goto fail;
        }
    }
    int n =
        snprintf(req, sizeof req,
                 "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n", path, port);
    if (n < 0 || (size_t)n >= sizeof req) {
        rc = ST_INVAL;
        goto fail;
    }
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) { /* tiny: one send on a fresh socket */
        rc = errno ? -errno : ST_PROTO;
        goto fail;
    }
    http_limits_t lim = {.max_head_bytes = 16384, .max_headers = 64};
    http_response_head_t head = {0};
    int consumed = ST_AGAIN;
    uint64_t clen = UINT64_MAX;
    for (;;) {
        if (consumed > 0 && clen != UINT64_MAX && in.len - (size_t)consumed >= clen)
            break;
        if (in.len >= UP_HTTP_MAX) {
            rc = ST_LIMIT;
            goto fail;
        }
        if (sy_buf_reserve(&in, 4096) != ST_OK) {
            rc = ST_NOMEM;
            goto fail;
        }
        ssize_t r = recv(fd, in.data + in.len, in.cap - in.len - 1, 0);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if ((rc = wait_fd(fd, POLLIN, deadline)) != ST_OK)
                goto fail;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            goto fail;
        }
        if (r == 0)
            break; /* EOF */
        in.len += (size_t)r;
        in.data[in.len] = '\0';
        if (consumed == ST_AGAIN) {
            consumed = http_parse_response(in.data, in.len, &lim, &head);
            if (consumed < 0 && consumed != ST_AGAIN) {
                rc = ST_PROTO;
                goto fail;
            }
            if (consumed > 0) {
                const http_header_t *h =
                    http_find_header(head.headers, head.num_headers, "content-length");
                if (h && http_parse_content_length(h->value, &clen) != ST_OK) {
                    rc = ST_PROTO;
                    goto fail;
                }
            }
        }
    }
    if (consumed <= 0) {
        rc = ST_PROTO;
        goto fail;
    }
    *status = head.status;
    if (body) {
        size_t blen = in.len - (size_t)consumed;
        if (clen != UINT64_MAX && clen < blen)
            blen = (size_t)clen;
        rc = sy_buf_append(body, in.data + consumed, blen);
    }
fail:
    close(fd);
    sy_buf_deinit(&in);
    return rc;
}

/* True if the /v1/models body lists model as one of its data[].id. */
static bool models_list(const char *body, size_t len, const char *model)
{
    json_error_t jerr;
    json_t *j = json_loadb(body, len, 0, &jerr);
    json_t *data = j ? json_object_get(j, "data") : NULL;
    bool found = false;
    size_t i;
    json_t *m;
    json_array_foreach(data, i, m)
    {
        const char *id = json_string_value(json_object_get(m, "id"));
        found |= id && strcmp(id, model) == 0;
    }
    json_decref(j);
    return found;
}

/* ------------------------------------------------------------------------------------------ */
/* children                                                                                    */

static up_child_t *gateway_of(up_ctx_t *c)
{
    return &c->kids[c->n_engines];
}

static bool is_gateway(const up_ctx_t *c, const up_child_t *k)
{
    return k == &c->kids[c->n_engines];
}

static int child_argv(up_ctx_t *c, up_child_t *k, up_strv_t *argv)
{
    if (!is_gateway(c, k))
        return up_engine_argv(&c->cfg, (size_t)(k - c->kids), c->exe, &k->addr, argv);
    up_addr_t eps[UP_MAX_ENGINES];
    for (size_t i = 0; i < c->n_engines; i++)
        eps[i] = c->kids[i].addr;
    return up_gateway_argv(&c->cfg, c->exe, k->addr.port, eps, argv);
}

static int spawn_child(up_ctx_t *c, up_child_t *k)
{
    up_strv_t argv = {0};
    char err[512];
    int rc = child_argv(c, k, &argv);
    if (rc == ST_OK)
        rc = up_proc_spawn(k->name, argv.v, k->log, NULL, &k->proc, err, sizeof err);
    else
        snprintf(err, sizeof err, "%s", st_str(rc));
    up_strv_deinit(&argv);
    if (rc != ST_OK) {
        fprintf(stderr, "switchyard up: cannot start %s: %s\n", k->name, err);
        return rc;
    }
    k->spawn_ms = now_ms();
    k->next_probe_ms = k->spawn_ms;
    snprintf(k->last_probe, sizeof k->last_probe, "no probe answered yet");
    return ST_OK;
}

static void print_tail(const up_child_t *k)
{
    fprintf(stderr, "switchyard up: last lines of %s:\n", k->log);
    if (up_log_tail(k->log, UP_TAIL_LINES, "    ", stderr) <= 0)
        fprintf(stderr, "    (empty)\n");
}

/* Probes a STARTING child once; true when it is ready. */
static bool probe_ready(up_ctx_t *c, up_child_t *k)
{
    int status = 0;
    int rc = http_get(k->addr.port, "/health", UP_PROBE_TIMEOUT_MS, &status, NULL);
    if (rc != ST_OK || status != 200) {
        if (rc != ST_OK)
            snprintf(k->last_probe, sizeof k->last_probe, "GET /health: %s", st_str(rc));
        else
            snprintf(k->last_probe, sizeof k->last_probe, "GET /health answered %d", status);
        return false;
    }
    if (!is_gateway(c, k))
        return true;
    /* the gateway also knows the model once it has read an engine's /v1/models */
    sy_buf_t body = SY_BUF_INIT;
    rc = http_get(k->addr.port, "/v1/models", UP_PROBE_TIMEOUT_MS, &status, &body);
    bool ok = rc == ST_OK && status == 200 && models_list(body.data, body.len, c->cfg.model);
    if (!ok)
        snprintf(k->last_probe, sizeof k->last_probe, "GET /v1/models does not list '%s' yet",
                 c->cfg.model);
    sy_buf_deinit(&body);
    return ok;
}

/* ------------------------------------------------------------------------------------------ */
/* the state machine                                                                           */

static void begin_stop(up_ctx_t *c, int exit_code, const char *reason)
{
    if (c->state >= UP_STOPPING)
        return;
    c->state = UP_STOPPING;
    c->exit_code = exit_code;
    c->stop_reason = reason;
    up_child_t *gw = gateway_of(c);
    fprintf(stderr, "switchyard up: stopping (%s): %s\n", reason,
            gw->proc && up_proc_state(gw->proc) != UPP_EXITED
                ? "the gateway first, then the engines"
                : "the engines");
    c->phase = UP_STOP_GATEWAY;
    if (gw->proc)
        up_proc_terminate(gw->proc, now_ms());
}

/* A second signal while stopping: no more grace. */
static void kill_all(up_ctx_t *c)
{
    fprintf(stderr, "switchyard up: second signal: killing every child now\n");
    for (size_t i = 0; i <= c->n_engines; i++)
        if (c->kids[i].proc)
            up_proc_kill(c->kids[i].proc);
}

static void on_signals(up_ctx_t *c)
{
    struct signalfd_siginfo si;
    while (read(c->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGCHLD)
            continue; /* reap_all looks at every child after each wakeup */
        if (c->state == UP_STOPPING) {
            kill_all(c);
            continue;
        }
        begin_stop(c, 0,
                   si.ssi_signo == SIGINT    ? "SIGINT"
                   : si.ssi_signo == SIGTERM ? "SIGTERM"
                                             : "SIGHUP");
    }
}

/* Reaps exited children; an exit before the stop is a failure of the cluster. */
static void reap_all(up_ctx_t *c)
{
    for (size_t i = 0; i <= c->n_engines; i++) {
        up_child_t *k = &c->kids[i];
        if (!k->proc)
            continue;
        up_proc_state_t before = up_proc_state(k->proc);
        if (!up_proc_poll(k->proc, now_ms()))
            continue;
        char how[128];
        up_proc_describe(k->proc, how, sizeof how);
        if (c->state == UP_STOPPING) {
            if (!up_proc_stopped_ok(k->proc)) {
                fprintf(stderr, "switchyard up: %s (pid %d) %s while stopping\n", k->name,
                        (int)up_proc_pid(k->proc), how);
                if (!up_proc_killed(k->proc))
                    print_tail(k);
                c->exit_code = 1;
            } else {
                fprintf(stderr, "switchyard up: %s stopped\n", k->name);
            }
            continue;
        }
        fprintf(stderr, "switchyard up: %s (pid %d) %s %s\n", k->name, (int)up_proc_pid(k->proc),
                how, before == UPP_STARTING ? "during start-up" : "while the cluster was running");
        print_tail(k);
        begin_stop(c, 1, before == UPP_STARTING ? "a child failed to start" : "a child died");
    }
}

static void print_ready(up_ctx_t *c)
{
    up_child_t *gw = gateway_of(c);
    printf("switchyard up: cluster ready: %zu engine%s, model %s, logs in %s\n", c->n_engines,
           c->n_engines == 1 ? "" : "s", c->cfg.model, c->log_dir);
    for (size_t i = 0; i < c->n_engines; i++) {
        up_child_t *k = &c->kids[i];
        const up_engine_spec_t *e = up_config_engine_spec(&c->cfg, i);
        printf("  %-8s pid=%d url=http://127.0.0.1:%d", k->name, (int)up_proc_pid(k->proc),
               k->addr.port);
        if (k->addr.kv_port)
            printf(" kv_events=tcp://127.0.0.1:%d", k->addr.kv_port);
        printf(" role=%s executor=%s log=%s\n", up_role_name(e->role), e->sim ? "sim" : "cpu",
               k->log);
    }
    printf("  %-8s pid=%d url=http://127.0.0.1:%d log=%s\n", gw->name, (int)up_proc_pid(gw->proc),
           gw->addr.port, gw->log);
    printf("  try: curl -s http://127.0.0.1:%d/v1/completions -H 'Content-Type: "
           "application/json' -d '{\"model\":\"%s\",\"prompt\":\"Hello\",\"max_tokens\":8}'\n",
           gw->addr.port, c->cfg.model);
    printf("ready: http://127.0.0.1:%d (OpenAI API under /v1); Ctrl-C or SIGTERM stops the "
           "cluster\n",
           gw->addr.port);
    fflush(stdout);
}

/* Probes a STARTING child when its next probe is due; a child past its ready deadline fails the
 * start-up. */
static void probe_step(up_ctx_t *c, up_child_t *k)
{
    uint64_t limit = (uint64_t)(c->cfg.ready_timeout * 1000.0);
    if (up_proc_state(k->proc) != UPP_STARTING || now_ms() < k->next_probe_ms)
        return;
    if (probe_ready(c, k)) {
        up_proc_set_ready(k->proc);
        fprintf(stderr, "switchyard up: %s ready on http://127.0.0.1:%d (%.1f s)\n", k->name,
                k->addr.port, (double)(now_ms() - k->spawn_ms) / 1000.0);
        return;
    }
    k->next_probe_ms = now_ms() + UP_PROBE_EVERY_MS;
    if (now_ms() - k->spawn_ms > limit) {
        fprintf(stderr, "switchyard up: %s (pid %d) was not ready within %g s (%s)\n", k->name,
                (int)up_proc_pid(k->proc), c->cfg.ready_timeout, k->last_probe);
        print_tail(k);
        begin_stop(c, 1, "a child was not ready in time");
    }
}

static void step_starting(up_ctx_t *c)
{
    bool engines_ready = true;
    for (size_t i = 0; i < c->n_engines; i++) {
        probe_step(c, &c->kids[i]);
        if (c->state != UP_STARTING)
            return;
        engines_ready &= up_proc_state(c->kids[i].proc) == UPP_READY;
    }
    if (!engines_ready)
        return;
    up_child_t *gw = gateway_of(c);
    if (!gw->proc) { /* every engine serves: the gateway reads their models at once */
        if (spawn_child(c, gw) != ST_OK)
            begin_stop(c, 1, "the gateway could not be started");
        return;
    }
    probe_step(c, gw);
    if (c->state == UP_STARTING && up_proc_state(gw->proc) == UPP_READY) {
        c->state = UP_READY;
        print_ready(c);
    }
}

static void step_stopping(up_ctx_t *c)
{
    uint64_t t = now_ms();
    uint64_t grace = (uint64_t)(c->stop_timeout * 1000.0);
    up_child_t *gw = gateway_of(c);
    if (c->phase == UP_STOP_GATEWAY) {
        if (gw->proc && up_proc_state(gw->proc) != UPP_EXITED) {
            if (!up_proc_killed(gw->proc) && t - up_proc_term_ms(gw->proc) > grace) {
                fprintf(stderr,
                        "switchyard up: gateway still running %g s after SIGTERM: SIGKILL\n",
                        c->stop_timeout);
                up_proc_kill(gw->proc);
            }
            return;
        }
        c->phase = UP_STOP_ENGINES;
        for (size_t i = 0; i < c->n_engines; i++)
            if (c->kids[i].proc)
                up_proc_terminate(c->kids[i].proc, t);
    }
    bool left = false;
    for (size_t i = 0; i < c->n_engines; i++) {
        up_proc_t *p = c->kids[i].proc;
        if (!p || up_proc_state(p) == UPP_EXITED)
            continue;
        left = true;
        up_proc_terminate(p, t); /* no-op unless it was never signalled */
        if (!up_proc_killed(p) && t - up_proc_term_ms(p) > grace) {
            fprintf(stderr, "switchyard up: %s still running %g s after SIGTERM: SIGKILL\n",
                    c->kids[i].name, c->stop_timeout);
            up_proc_kill(p);
        }
    }
    if (!left)
        c->state = UP_DONE;
}

static void run(up_ctx_t *c)
{
    for (;;) {
        up_assert_state(c); /* every exit seen so far has been acted on */
        if (c->state == UP_DONE)
            break;
        int timeout = c->state == UP_READY ? UP_IDLE_MS : UP_TICK_MS;
        struct pollfd pfd = {.fd = c->sigfd, .events = POLLIN};
        int r = poll(&pfd, 1, timeout);
        if (r < 0 && errno != EINTR) {
            fprintf(stderr, "switchyard up: poll: %s\n", strerror(errno));
            if (c->state < UP_STOPPING)
                begin_stop(c, 1, "internal error");
            else
                kill_all(c);
        }
        if (r > 0)
            on_signals(c);
        reap_all(c);
        if (c->state == UP_STARTING)
            step_starting(c);
        if (c->state == UP_STOPPING)
            step_stopping(c);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* set-up                                                                                      */

static int make_log_dir(up_ctx_t *c, const char *want)
{
    if (want) {
        if (strlen(want) >= sizeof c->log_dir - 64) {
            fprintf(stderr, "switchyard up: --log-dir: path too long\n");
            return ST_INVAL;
        }
        snprintf(c->log_dir, sizeof c->log_dir, "%s", want);
        if (mkdir(want, 0755) < 0 && errno != EEXIST) {
            int e = errno;
            fprintf(stderr, "switchyard up: --log-dir %s: %s\n", want, strerror(e));
            return -e;
        }
        struct stat sb;
        if (stat(want, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
            fprintf(stderr, "switchyard up: --log-dir %s: not a directory\n", want);
            return ST_INVAL;
        }
        return ST_OK;
    }
    snprintf(c->log_dir, sizeof c->log_dir, "/tmp/switchyard-up.XXXXXX");
    if (!mkdtemp(c->log_dir)) {
        int e = errno;
        fprintf(stderr, "switchyard up: cannot create a log directory under /tmp: %s\n",
                strerror(e));
        return -e;
    }
    return ST_OK;
}

static bool scheduler_known(const char *name)
{
    for (const char *const *n = gws_builtin_names(); *n; n++)
        if (strcmp(*n, name) == 0)
            return true;
    return false;
}

static void print_scheduler_names(FILE *f)
{
    const char *sep = "";
    for (const char *const *n = gws_builtin_names(); *n; n++, sep = ", ")
        fprintf(f, "%s%s", sep, *n);
}

/* Prints every child's command line (with the environment it gets) without starting anything. */
static int dry_run(up_ctx_t *c)
{
    printf("# switchyard up --dry-run: the commands `up` would run (logs in %s)\n", c->log_dir);
    for (size_t i = 0; i <= c->n_engines; i++) {
        up_strv_t argv = {0};
        if (child_argv(c, &c->kids[i], &argv) != ST_OK) {
            up_strv_deinit(&argv);
            return 1;
        }
        sy_buf_t line = SY_BUF_INIT;
        sy_buf_appendf(&line, "PYTHONHASHSEED=%s", getenv("PYTHONHASHSEED"));
        for (size_t a = 0; a < argv.n; a++) {
            sy_buf_append_char(&line, ' ');
            up_shell_word(&line, argv.v[a]);
        }
        printf("%s\n", line.data ? line.data : "");
        sy_buf_deinit(&line);
        up_strv_deinit(&argv);
    }
    return 0;
}

int up_main(int argc, char **argv)
{
    const char *log_dir = NULL, *scheduler = NULL, *sim_profile = NULL;
    int64_t port = -1;
    uint64_t n_engines = 0;
    double ready_timeout = -1, sim_speed = -1, stop_timeout = UP_DEFAULT_STOP_TIMEOUT;
    bool dry = false;
    const cli_opt_t opts[] = {
        {"port", "PORT", CLI_INT, &port, "gateway port on 127.0.0.1 (0 = a free port)", "8080"},
        {"engines", "N", CLI_UINT, &n_engines,
         "number of engines (a cluster file with one engine group: its count)", "3"},
        {"log-dir", "DIR", CLI_STRING, &log_dir,
         "directory for the children's log files (created if missing)",
         "a new /tmp/switchyard-up.XXXXXX"},
        {"ready-timeout", "SECONDS", CLI_DOUBLE, &ready_timeout,
         "time each child gets to become ready", "60"},
        {"stop-timeout", "SECONDS", CLI_DOUBLE, &stop_timeout,
         "grace after SIGTERM before a child is SIGKILLed (gateway, then engines)", "10"},
        {"scheduler", "NAME", CLI_STRING, &scheduler, "the gateway's built-in scheduler",
         "default"},
        {"sim-profile", "NAME", CLI_STRING, &sim_profile,
         "timing profile of the sim engines (a100-llama3-8b, h100-llama3-8b, l4-llama3-8b)",
         "a100-llama3-8b"},
        {"sim-speed", "X", CLI_DOUBLE, &sim_speed,
         "sim time scale of the sim engines (0 = as fast as possible)", "1"},
        {"dry-run", NULL, CLI_FLAG, &dry, "print the children's command lines and exit", NULL},
    };
    cli_spec_t spec = {
        .prog = "switchyard up",
        .summary =
            "Starts a local cluster on 127.0.0.1: engines (simulated unless the cluster file "
            "names a model) and the gateway in front of them, with KV events, PYTHONHASHSEED=0 "
            "unless set, and free ports. Waits until every child is ready, prints where to "
            "send requests, and runs until SIGINT or SIGTERM; then stops the gateway, then the "
            "engines. Without a file: 3 sim engines (a100-llama3-8b), model sim-llama, gateway "
            "on port 8080 with the default scheduler. File format: deploy/cluster/default.yaml.",
        .opts = opts,
        .n_opts = sizeof opts / sizeof opts[0],
        .max_positional = 1,
        .positional = "[cluster.yaml]",
    };
    setvbuf(stdout, NULL, _IOLBF, 0); /* a script waiting for "ready:" sees it at once */
    const char *pos[1] = {NULL};
    size_t n_pos = 0;
    int done = cli_parse_main(&spec, argc, argv, pos, &n_pos);
    if (done >= 0)
        return done;
    char err[768];
    int rc;

    up_ctx_t ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.sigfd = -1;
    ctx.exit_code = 1;
    up_ctx_t *c = &ctx;
    int exit_code = 2;
    rc = n_pos ? up_config_load_file(pos[0], &c->cfg, err, sizeof err) : up_config_default(&c->cfg);
    if (rc != ST_OK) {
        fprintf(stderr, "switchyard up: %s\n", n_pos ? err : "out of memory");
        goto fail;
    }
    /* command-line overrides */
    if (port > 65535 || port < -1) {
        fprintf(stderr, "switchyard up: --port must be 0..65535\n");
        goto fail;
    }
    if (port >= 0)
        c->cfg.gateway_port = (int)port;
    if (n_engines) {
        if (c->cfg.n_engines != 1 || n_engines > UP_MAX_ENGINES) {
            fprintf(stderr,
                    "switchyard up: --engines needs 1..%d and a cluster with one engine "
                    "group\n",
                    UP_MAX_ENGINES);
            goto fail;
        }
        c->cfg.engines[0].count = (unsigned)n_engines;
    }
    if (ready_timeout >= 0) {
        if (ready_timeout == 0) {
            fprintf(stderr, "switchyard up: --ready-timeout must be > 0\n");
            goto fail;
        }
        c->cfg.ready_timeout = ready_timeout;
    }
    if (stop_timeout < 0) {
        fprintf(stderr, "switchyard up: --stop-timeout must be >= 0\n");
        goto fail;
    }
    c->stop_timeout = stop_timeout;
    if (scheduler) {
        snprintf(c->cfg.scheduler, sizeof c->cfg.scheduler, "%s", scheduler);
        c->cfg.gateway_config[0] = '\0';
    }
    if (!c->cfg.gateway_config[0] && !scheduler_known(c->cfg.scheduler)) {
        fprintf(stderr, "switchyard up: unknown scheduler '%s' (built in: ", c->cfg.scheduler);
        print_scheduler_names(stderr);
        fprintf(stderr, ")\n");
        goto fail;
    }
    if (sim_profile && !sim_profile_find(sim_profile)) {
        fprintf(stderr, "switchyard up: --sim-profile: unknown '%s' (known: %s)\n", sim_profile,
                sim_profile_names());
        goto fail;
    }
    for (size_t g = 0; g < c->cfg.n_engines; g++) {
        up_engine_spec_t *e = &c->cfg.engines[g];
        if (e->sim && sim_profile)
            snprintf(e->sim_profile, sizeof e->sim_profile, "%s", sim_profile);
        if (e->sim && sim_speed >= 0)
            e->sim_speed = sim_speed;
    }
    /* engines and gateway hash prompt blocks identically only with the same seed */
    const char *seed = c->cfg.hash_seed[0] ? c->cfg.hash_seed : getenv("PYTHONHASHSEED");
    if (setenv("PYTHONHASHSEED", seed && *seed ? seed : "0", 1) != 0) {
        exit_code = 1;
        goto fail;
    }

    ssize_t xl = readlink("/proc/self/exe", c->exe, sizeof c->exe - 1);
    if (xl <= 0 || (size_t)xl >= sizeof c->exe - 1) {
        fprintf(stderr, "switchyard up: cannot read /proc/self/exe\n");
        exit_code = 1;
        goto fail;
    }
    c->exe[xl] = '\0';

    /* ports: the gateway's (fixed or free) and two per engine (HTTP, KV events) */
    c->n_engines = up_config_engine_count(&c->cfg);
    c->kids = sy_calloc(c->n_engines + 1, sizeof *c->kids);
    int ports[2 * UP_MAX_ENGINES + 1];
    if (!c->kids) {
        exit_code = 1;
        goto fail;
    }
    if ((rc = pick_ports(ports, 2 * c->n_engines + 1)) != ST_OK) {
        fprintf(stderr, "switchyard up: cannot pick free ports: %s\n", st_str(rc));
        exit_code = 1;
        goto fail;
    }
    up_child_t *gw = gateway_of(c);
    gw->addr.port = c->cfg.gateway_port ? c->cfg.gateway_port : ports[2 * c->n_engines];
    if (!dry && c->cfg.gateway_port && (rc = port_available(gw->addr.port)) != ST_OK) {
        fprintf(stderr,
                "switchyard up: gateway port 127.0.0.1:%d is not available (%s); choose "
                "another with --port (0 = a free one)\n",
                gw->addr.port, st_str(rc));
        exit_code = 1;
        goto fail;
    }
    if (dry) /* nothing is created */
        snprintf(c->log_dir, sizeof c->log_dir, "%s",
                 log_dir ? log_dir : "/tmp/switchyard-up.XXXXXX");
    else if ((rc = make_log_dir(c, log_dir)) != ST_OK) {
        exit_code = 1;
        goto fail;
    }
    for (size_t i = 0; i <= c->n_engines; i++) {
        up_child_t *k = &c->kids[i];
        if (i < c->n_engines) {
            up_engine_name(i, k->name, sizeof k->name);
            k->addr.port = ports[2 * i];
            k->addr.kv_port = up_config_engine_spec(&c->cfg, i)->kv_events ? ports[2 * i + 1] : 0;
        } else {
            snprintf(k->name, sizeof k->name, "gateway");
        }
        int n = snprintf(k->log, sizeof k->log, "%s/%s.log", c->log_dir, k->name);
        if (n < 0 || (size_t)n >= sizeof k->log) {
            fprintf(stderr, "switchyard up: log directory path too long\n");
            exit_code = 1;
            goto fail;
        }
    }
    if (dry) {
        exit_code = dry_run(c);
        goto fail;
    }

    /* signals: SIGINT and SIGTERM stop (also when the shell started us with them ignored),
     * SIGHUP too unless ignored (nohup), SIGCHLD wakes the loop */
    sigset_t mask;
    struct sigaction old_hup;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGCHLD);
    if (sigaction(SIGHUP, NULL, &old_hup) == 0 && old_hup.sa_handler != SIG_IGN)
        sigaddset(&mask, SIGHUP);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    c->sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (c->sigfd < 0) {
        fprintf(stderr, "switchyard up: signalfd: %s\n", strerror(errno));
        exit_code = 1;
        goto fail;
    }
    printf("switchyard up: starting %zu engine%s and the gateway (PYTHONHASHSEED=%s); logs in "
           "%s\n",
           c->n_engines, c->n_engines == 1 ? "" : "s", getenv("PYTHONHASHSEED"), c->log_dir);
    c->state = UP_STARTING;
    for (size_t i = 0; i < c->n_engines; i++) {
        if (spawn_child(c, &c->kids[i]) != ST_OK) {
            begin_stop(c, 1, "an engine could not be started");
            break;
        }
    }
    run(c);
    exit_code = c->exit_code;
    if (exit_code == 0)
        printf("switchyard up: stopped; every child exited cleanly\n");
    else
        fprintf(stderr, "switchyard up: stopped (%s); exit code %d\n",
                c->stop_reason ? c->stop_reason : "?", exit_code);
fail:
    for (size_t i = 0; c->kids && i <= c->n_engines; i++)
        up_proc_destroy(c->kids[i].proc); /* kills and reaps anything still running */
    if (c->sigfd >= 0)
        close(c->sigfd);
    sy_free(c->kids);
    up_config_deinit(&c->cfg);
    return exit_code;
}
