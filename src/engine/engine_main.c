/* engine_main.c - placeholder until the API layer lands (replaced in this same change). */
#include "engine/engine_main.h"

#include <stdio.h>

int engine_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "engine: not built yet\n");
    return 1;
}
