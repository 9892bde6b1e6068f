/*
 * proc.c - see proc.h.
 * Thread-safety: start-up only.
 */
#include "common/proc.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <dirent.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/ev.h"
#include "common/log.h"
#include "common/status.h"

void sy_proc_block_signals(sigset_t *mask, bool with_hup)
{
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(mask);
    sigaddset(mask, SIGTERM);
    sigaddset(mask, SIGINT);
    if (with_hup)
        sigaddset(mask, SIGHUP);
    sigprocmask(SIG_BLOCK, mask, NULL);
}

uint64_t sy_raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t want = rl.rlim_max;
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            sy_warn("proc.fd_limit", "msg=\"could not raise RLIMIT_NOFILE\" want=%llu",
                    (unsigned long long)want);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return (uint64_t)rl.rlim_cur;
}

typedef struct proc_metrics {
    mx_series_t *rss, *fds, *live;
    uint64_t fds_counted_ns; /* sy_mono_ns() when /proc/self/fd was last listed (0: never) */
} proc_metrics_t;

/* process_open_fds is recounted at most this often: listing /proc/self/fd costs about a
 * microsecond per open descriptor, and the gateway scrapes every engine every 50 ms */
#define PROC_FDS_PERIOD_NS 1000000000ull

static proc_metrics_t g_pm; /* one registry per process registers these */

static void proc_collect(void *udata)
{
    proc_metrics_t *pm = udata;
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    mx_gauge_set(pm->rss, (double)resident * (double)sysconf(_SC_PAGESIZE));
    uint64_t now = sy_mono_ns();
    if (pm->fds_counted_ns == 0 || now - pm->fds_counted_ns >= PROC_FDS_PERIOD_NS) {
        size_t n = 0;
        DIR *d = opendir("/proc/self/fd");
        if (d) {
            for (struct dirent *e = readdir(d); e; e = readdir(d))
                n += e->d_name[0] != '.';
            closedir(d);
            n = n ? n - 1 : 0; /* the directory handle itself */
        }
        mx_gauge_set(pm->fds, (double)n);
        pm->fds_counted_ns = now;
    }
    mx_gauge_set(pm->live, (double)sy_alloc_live_bytes());
}

int sy_proc_metrics_register(mx_registry_t *r)
{
    mx_family_t *rss = mx_family_create(r, MX_GAUGE, "process_resident_memory_bytes",
                                        "Resident memory size in bytes.", NULL, 0, NULL, 0);
    mx_family_t *fds = mx_family_create(r, MX_GAUGE, "process_open_fds",
                                        "Number of open file descriptors.", NULL, 0, NULL, 0);
    mx_family_t *live =
        mx_family_create(r, MX_GAUGE, "switchyard_alloc_live_bytes",
                         "Bytes currently allocated through sy_malloc.", NULL, 0, NULL, 0);
    g_pm.rss = rss ? mx_series_get(rss, NULL, 0) : NULL;
    g_pm.fds = fds ? mx_series_get(fds, NULL, 0) : NULL;
    g_pm.live = live ? mx_series_get(live, NULL, 0) : NULL;
    if (!g_pm.rss || !g_pm.fds || !g_pm.live)
        return ST_NOMEM;
    mx_registry_on_collect(r, proc_collect, &g_pm);
    return ST_OK;
}

void sy_proc_tune_malloc(void)
{
#if defined(__GLIBC__)
    (void)mallopt(M_MMAP_THRESHOLD, (int)SY_PROC_MMAP_THRESHOLD);
    (void)mallopt(M_TRIM_THRESHOLD, (int)SY_PROC_TRIM_THRESHOLD);
#endif
}
