/*
 * gw_endpoint.c - helpers over the endpoint data model (gw_endpoint.h).
 * Thread-safety: pure functions over the caller's endpoint.
 */
#include "gateway/gw_endpoint.h"

#include <string.h>

bool gw_endpoint_serves(const gw_endpoint_t *ep, const char *model)
{
    if (ep == NULL || model == NULL)
        return false;
    for (size_t i = 0; i < ep->n_models && i < GW_MAX_MODELS; i++) {
        if (ep->models[i] != NULL && strcmp(ep->models[i], model) == 0)
            return true;
    }
    return false;
}
