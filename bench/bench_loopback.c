/*
 * bench_loopback.c - sy-bench-loopback: raw TCP throughput over 127.0.0.1 between two threads,
 * the ceiling a KV transfer between two engines on one host can reach. The socket options are
 * the KV connector's (TCP_NODELAY, SO_SNDBUF/SO_RCVBUF of --sock-buf bytes); the sender writes
 * --bytes in --chunk writes from a source buffer of --buffer bytes (default: --bytes, at most
 * 2 GiB), the receiver reads (MSG_WAITALL) into a destination buffer of the same size, both
 * touched first - so, like a KV pull, the bytes come from and land in memory, not a cached
 * chunk (--buffer 2097152 gives the cache-resident best case). Prints one JSON line per repetition
 * and a last line with the median: {"bytes":N,"seconds":S,"gbytes_per_s":G}.
 * --warmup N runs N untimed repetitions first: on this project's VMs the kernel's first touch of
 * a page (copy_from_user / copy_to_user through a fresh mapping) is very slow, which would
 * measure the hypervisor instead of TCP.
 * Usage: sy-bench-loopback [--bytes N] [--chunk N] [--buffer N] [--sock-buf N] [--reps N]
 *                          [--warmup N]
 * Thread-safety: n/a (a program).
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct lb_args {
    int fd;
    uint64_t bytes;
    size_t chunk, buf_len;
    char *buf;
} lb_args_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void tune(int fd, int sock_buf)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (sock_buf > 0) {
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sock_buf, sizeof sock_buf);
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sock_buf, sizeof sock_buf);
    }
}

static void *sender(void *arg)
{
    lb_args_t *a = arg;
    uint64_t left = a->bytes;
    size_t off = 0;
    while (left) {
        size_t n = left < a->chunk ? (size_t)left : a->chunk;
        if (n > a->buf_len - off)
            n = a->buf_len - off;
        ssize_t w = send(a->fd, a->buf + off, n, 0);
        if (w <= 0)
            break;
        left -= (uint64_t)w;
        off = (off + (size_t)w) % a->buf_len;
    }
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    uint64_t bytes = 512ull << 20;
    size_t chunk = 2u << 20;
    int sock_buf = 8 << 20, reps = 5, warmup = 1;
    uint64_t buf_len = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--bytes") == 0)
            bytes = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--chunk") == 0)
            chunk = (size_t)strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--buffer") == 0)
            buf_len = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--sock-buf") == 0)
            sock_buf = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--reps") == 0)
            reps = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--warmup") == 0)
            warmup = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: sy-bench-loopback [--bytes N] [--chunk N] [--buffer N] "
                            "[--sock-buf N] [--reps N] [--warmup N]\n");
            return 2;
        }
    }
    if (!buf_len)
        buf_len = bytes < (2ull << 30) ? bytes : (2ull << 30);
    if (chunk == 0 || bytes == 0 || reps < 1 || reps > 1000 || warmup < 0 || warmup > 100 ||
        buf_len < chunk)
        return 2;
    char *sbuf = malloc(buf_len), *rbuf = malloc(buf_len);
    double *gbps = calloc((size_t)reps, sizeof *gbps);
    if (!sbuf || !rbuf || !gbps)
        return 1;
    memset(sbuf, 0x5a, buf_len);
    memset(rbuf, 1, buf_len); /* not 0: malloc + memset 0 may become calloc (untouched pages) */
    for (int r = -warmup; r < reps; r++) {
        int ls = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t sl = sizeof sa;
        if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(ls, 1) != 0 ||
            getsockname(ls, (struct sockaddr *)&sa, &sl) != 0) {
            perror("listen");
            return 1;
        }
        int c = socket(AF_INET, SOCK_STREAM, 0);
        tune(c, sock_buf);
        if (connect(c, (struct sockaddr *)&sa, sizeof sa) != 0) {
            perror("connect");
            return 1;
        }
        int s = accept(ls, NULL, NULL);
        tune(s, sock_buf);
        lb_args_t a = {.fd = c, .bytes = bytes, .chunk = chunk, .buf_len = buf_len, .buf = sbuf};
        pthread_t th;
        double t0 = now_s();
        pthread_create(&th, NULL, sender, &a);
        uint64_t got = 0;
        size_t off = 0;
        while (got < bytes) {
            size_t n = bytes - got < chunk ? (size_t)(bytes - got) : chunk;
            if (n > buf_len - off)
                n = buf_len - off;
            ssize_t k = recv(s, rbuf + off, n, MSG_WAITALL);
            if (k <= 0)
                break;
            got += (uint64_t)k;
            off = (off + (size_t)k) % buf_len;
        }
        double dt = now_s() - t0;
        pthread_join(th, NULL);
        close(s);
        close(c);
        close(ls);
        if (r < 0)
            continue; /* warm-up */
        gbps[r] = (double)got / dt / 1e9;
        printf("{\"rep\":%d,\"bytes\":%llu,\"seconds\":%.6f,\"gbytes_per_s\":%.3f}\n", r,
               (unsigned long long)got, dt, gbps[r]);
    }
    qsort(gbps, (size_t)reps, sizeof *gbps, cmp_d);
    printf("{\"median\":true,\"bytes\":%llu,\"gbytes_per_s\":%.3f}\n", (unsigned long long)bytes,
           gbps[reps / 2]);
    free(sbuf);
    free(rbuf);
    free(gbps);
    return 0;
}
