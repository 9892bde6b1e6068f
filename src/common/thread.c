/*
 * thread.c - see thread.h. The mask is set around pthread_create because a new thread inherits
 * its creator's mask.
 * Thread-safety: reentrant.
 */
#include "common/thread.h"

#include <signal.h>

#include "common/status.h"

int sy_thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc == 0 ? ST_OK : -rc;
}
