/*
 * up_proc.c - child processes of `switchyard up` (see up_proc.h for the state machine).
 *
 * No orphans, by three means:
 * - every child leads its own process group (setpgid in the child and in the parent, so the group
 *   exists before either returns), which keeps a terminal's Ctrl-C away from the children (`up`
 *   stops them in order) and lets up_proc_kill reach anything a child started;
 * - PR_SET_PDEATHSIG(SIGTERM) in the child, followed by a getppid() check that closes the race
 *   with a parent that died before the prctl: a SIGKILLed `up` still takes its children down;
 * - up_proc_destroy SIGKILLs and reaps whatever has not exited.
 * Between fork and exec the child calls only async-signal-safe functions.
 * Thread-safety: one thread.
 */
#include "up/up_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/status.h"

#define UP_TAIL_BYTES 16384

struct up_proc {
    char name[64];
    char *log; /* owned */
    pid_t pid;
    up_proc_state_t state;
    int wstatus;      /* waitpid status, EXITED only */
    bool status_lost; /* EXITED without a status (reaped elsewhere) */
    uint64_t term_ms; /* SIGTERM sent at (STOPPING) */
    uint64_t exit_ms; /* reaped at */
    bool termed;      /* SIGTERM sent */
    bool killed;      /* SIGKILL sent */
};

static void proc_assert_state(const up_proc_t *p)
{
    SY_ASSERT(p->pid > 0);
    SY_ASSERT(p->state >= UPP_STARTING && p->state <= UPP_EXITED);
}

const char *up_proc_state_name(up_proc_state_t s)
{
    switch (s) {
    case UPP_STARTING:
        return "starting";
    case UPP_READY:
        return "ready";
    case UPP_STOPPING:
        return "stopping";
    case UPP_EXITED:
        return "exited";
    }
    return "?";
}

void up_shell_word(sy_buf_t *b, const char *arg)
{
    bool plain = arg[0] != '\0';
    for (const char *s = arg; *s && plain; s++)
        plain = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=,@+%",
                       *s) != NULL;
    if (plain) {
        sy_buf_append_str(b, arg);
        return;
    }
    sy_buf_append_char(b, '\'');
    for (const char *s = arg; *s; s++) {
        if (*s == '\'')
            sy_buf_append_str(b, "'\\''");
        else
            sy_buf_append_char(b, *s);
    }
    sy_buf_append_char(b, '\'');
}

/* Async-signal-safe: writes "switchyard up: exec failed (errno N): PATH\n" to fd 2. */
static void child_exec_failed(const char *path, int e)
{
    char num[16];
    int n = 0;
    unsigned u = (unsigned)e;
    do {
        num[sizeof num - 1 - n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u && n < (int)sizeof num - 1);
    static const char a[] = "switchyard up: exec failed (errno ";
    static const char b[] = "): ";
    ssize_t ignored = write(2, a, sizeof a - 1);
    ignored = write(2, num + sizeof num - n, (size_t)n);
    ignored = write(2, b, sizeof b - 1);
    ignored = write(2, path, strlen(path));
    ignored = write(2, "\n", 1);
    (void)ignored;
}

int up_proc_spawn(const char *name, char *const argv[], const char *log_path,
                  const sigset_t *child_mask, up_proc_t **out, char *err, size_t errlen)
{
    *out = NULL;
    int logfd = -1, nullfd = -1, rc = ST_OK;
    sy_buf_t cmd = SY_BUF_INIT;
    up_proc_t *p = sy_calloc(1, sizeof *p);
    if (!p || !(p->log = sy_strdup(log_path))) {
        sy_errf(err, errlen, "out of memory");
        rc = ST_NOMEM;
        goto fail;
    }
    snprintf(p->name, sizeof p->name, "%s", name);
    logfd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (logfd < 0) {
        rc = -errno;
        sy_errf(err, errlen, "%s: %s", log_path, strerror(errno));
        goto fail;
    }
    nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (nullfd < 0) {
        rc = -errno;
        sy_errf(err, errlen, "/dev/null: %s", strerror(errno));
        goto fail;
    }
    /* the command line first, so the log says what ran */
    sy_buf_append_str(&cmd, "# switchyard up: ");
    for (size_t i = 0; argv[i]; i++) {
        if (i)
            sy_buf_append_char(&cmd, ' ');
        up_shell_word(&cmd, argv[i]);
    }
    sy_buf_append_char(&cmd, '\n');
    if (cmd.data && write(logfd, cmd.data, cmd.len) != (ssize_t)cmd.len) {
        rc = -errno;
        sy_errf(err, errlen, "%s: %s", log_path, strerror(errno));
        goto fail;
    }
    sigset_t empty;
    sigemptyset(&empty);
    const sigset_t *mask = child_mask ? child_mask : &empty;
    pid_t parent = getpid();
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        rc = -errno;
        sy_errf(err, errlen, "fork: %s", strerror(errno));
        goto fail;
    }
    if (pid == 0) {
        /* child: async-signal-safe calls only */
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) /* the parent died before the prctl took effect */
            _exit(1);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        if (dup2(nullfd, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0)
            _exit(126);
        sigprocmask(SIG_SETMASK, mask, NULL);
        execv(argv[0], argv);
        child_exec_failed(argv[0], errno);
        _exit(127);
    }
    /* parent: the group exists once either side's setpgid ran (EACCES after the exec is fine) */
    if (setpgid(pid, pid) < 0 && errno != EACCES && errno != ESRCH)
        sy_warn("up.setpgid", "child=%s pid=%d err=\"%s\"", name, (int)pid, strerror(errno));
    p->pid = pid;
    p->state = UPP_STARTING;
    close(logfd);
    close(nullfd);
    sy_buf_deinit(&cmd);
    *out = p;
    return ST_OK;
fail:
    if (nullfd >= 0)
        close(nullfd);
    if (logfd >= 0)
        close(logfd);
    sy_buf_deinit(&cmd);
    if (p)
        sy_free(p->log);
    sy_free(p);
    return rc;
}

bool up_proc_poll(up_proc_t *p, uint64_t now_ms)
{
    proc_assert_state(p);
    if (p->state == UPP_EXITED)
        return false;
    int st = 0;
    pid_t r;
    do {
        r = waitpid(p->pid, &st, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == 0)
        return false;
    if (r < 0) /* ECHILD: not ours any more; nothing to signal */
        p->status_lost = true;
    p->wstatus = st;
    p->state = UPP_EXITED;
    p->exit_ms = now_ms;
    return true;
}

void up_proc_set_ready(up_proc_t *p)
{
    proc_assert_state(p);
    SY_ASSERT(p->state == UPP_STARTING);
    p->state = UPP_READY;
}

void up_proc_terminate(up_proc_t *p, uint64_t now_ms)
{
    proc_assert_state(p);
    if (p->state != UPP_STARTING && p->state != UPP_READY)
        return;
    kill(p->pid, SIGTERM); /* not reaped yet: the pid is still ours */
    p->term_ms = now_ms;
    p->termed = true;
    p->state = UPP_STOPPING;
}

void up_proc_kill(up_proc_t *p)
{
    proc_assert_state(p);
    if (p->state == UPP_EXITED)
        return;
    kill(-p->pid, SIGKILL);
    kill(p->pid, SIGKILL); /* in case the group could not be made */
    p->killed = true;
}

up_proc_state_t up_proc_state(const up_proc_t *p)
{
    return p->state;
}

const char *up_proc_name(const up_proc_t *p)
{
    return p->name;
}

const char *up_proc_log(const up_proc_t *p)
{
    return p->log;
}

pid_t up_proc_pid(const up_proc_t *p)
{
    return p->pid;
}

uint64_t up_proc_term_ms(const up_proc_t *p)
{
    return p->term_ms;
}

bool up_proc_killed(const up_proc_t *p)
{
    return p->killed;
}

bool up_proc_stopped_ok(const up_proc_t *p)
{
    if (p->state != UPP_EXITED || p->status_lost || p->killed)
        return false;
    if (WIFEXITED(p->wstatus))
        return WEXITSTATUS(p->wstatus) == 0;
    /* a child still starting may not handle SIGTERM yet: it dies of the one we sent */
    return WIFSIGNALED(p->wstatus) && WTERMSIG(p->wstatus) == SIGTERM && p->termed;
}

void up_proc_describe(const up_proc_t *p, char *buf, size_t cap)
{
    if (p->state != UPP_EXITED)
        snprintf(buf, cap, "is still running (%s)", up_proc_state_name(p->state));
    else if (p->status_lost)
        snprintf(buf, cap, "exited (status unknown)");
    else if (WIFEXITED(p->wstatus))
        snprintf(buf, cap, "exited with status %d", WEXITSTATUS(p->wstatus));
    else if (WIFSIGNALED(p->wstatus))
        snprintf(buf, cap, "was killed by signal %d (%s)", WTERMSIG(p->wstatus),
                 strsignal(WTERMSIG(p->wstatus)));
    else
        snprintf(buf, cap, "ended (wait status 0x%x)", (unsigned)p->wstatus);
}

int up_log_tail(const char *path, size_t max_lines, const char *indent, FILE *f)
{
    if (max_lines == 0)
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    char *buf = sy_malloc(UP_TAIL_BYTES + 1);
    int rc = 0;
    if (!buf) {
        rc = ST_NOMEM;
        goto fail;
    }
    struct stat sb;
    off_t start = 0;
    if (fstat(fd, &sb) == 0 && sb.st_size > UP_TAIL_BYTES)
        start = sb.st_size - UP_TAIL_BYTES;
    size_t len = 0;
    while (len < UP_TAIL_BYTES) {
        ssize_t r = pread(fd, buf + len, UP_TAIL_BYTES - len, start + (off_t)len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    buf[len] = '\0';
    size_t from = 0;
    if (start > 0) { /* skip the partial first line */
        char *nl = memchr(buf, '\n', len);
        from = nl ? (size_t)(nl - buf) + 1 : len;
    }
    /* walk back over max_lines line ends (a final newline does not start a line) */
    size_t end = len, pos = end, lines = 0;
    if (pos > from && buf[pos - 1] == '\n')
        pos--;
    while (pos > from && lines < max_lines) {
        if (buf[pos - 1] == '\n' && ++lines == max_lines)
            break;
        pos--;
    }
    int written = 0;
    for (size_t i = pos; i < end;) {
        char *nl = memchr(buf + i, '\n', end - i);
        size_t l = nl ? (size_t)(nl - (buf + i)) : end - i;
        fprintf(f, "%s%.*s\n", indent, (int)l, buf + i);
        written++;
        i += l + 1;
    }
    rc = written;
fail:
    sy_free(buf);
    close(fd);
    return rc;
}

void up_proc_destroy(up_proc_t *p)
{
    if (!p)
        return;
    if (p->state != UPP_EXITED) {
        up_proc_kill(p);
        int st;
        while (waitpid(p->pid, &st, 0) < 0 && errno == EINTR)
            ;
    }
    sy_free(p->log);
    sy_free(p);
}
