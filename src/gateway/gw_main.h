/*
 * gw_main.h - `switchyard gateway`: command line, wiring of the gateway modules, signals, loop.
 * Thread-safety: process entry; runs on the main thread.
 */
#ifndef SY_GW_MAIN_H
#define SY_GW_MAIN_H

/* argv[0] is "gateway". Returns the process exit code. */
int gateway_main(int argc, char **argv);

#endif
