/*
 * thread.h - starting the project's background threads (engine core, KV-event publisher and
 * subscriber) the same way: with every signal blocked, so SIGTERM/SIGINT/SIGHUP stay with the
 * main thread's signalfd.
 * Thread-safety: callable from any thread.
 */
#ifndef SY_THREAD_H
#define SY_THREAD_H

#include <pthread.h>

/* Starts fn(arg) on a new joinable thread with all signals blocked; the caller's signal mask is
 * unchanged. Returns ST_OK or -errno. */
int sy_thread_start(pthread_t *t, void *(*fn)(void *), void *arg);

#endif
