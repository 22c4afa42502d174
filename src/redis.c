/* Placeholder until the Redis backend lands (issue 3): refuses clearly. */
#include "error.h"
#include "redis_url.h"

int nori_redis_backend_new(const char *url, nori_backend **out)
{
    nori__redis_url u;
    int rc = nori__redis_url_parse(url, &u);
    if (rc != NORI_OK)
        return rc;
    nori__redis_url_free(&u);
    (void)out;
    return nori__fail(NORI_EBACKEND, "the Redis backend is not built yet");
}
