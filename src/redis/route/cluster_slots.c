// SPDX-License-Identifier: MIT
#include "redis/route/cluster_slots.h"

#include "error.h"

#include <stdlib.h>
#include <string.h>

/* CRC16-XMODEM, one table step per byte (the table is crc16 of each byte
 * value shifted into the high half, as in Redis's crc16.c). */
static const uint16_t crc16_table[256] = {
    0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50a5, 0x60c6, 0x70e7,
    0x8108, 0x9129, 0xa14a, 0xb16b, 0xc18c, 0xd1ad, 0xe1ce, 0xf1ef,
    0x1231, 0x0210, 0x3273, 0x2252, 0x52b5, 0x4294, 0x72f7, 0x62d6,
    0x9339, 0x8318, 0xb37b, 0xa35a, 0xd3bd, 0xc39c, 0xf3ff, 0xe3de,
    0x2462, 0x3443, 0x0420, 0x1401, 0x64e6, 0x74c7, 0x44a4, 0x5485,
    0xa56a, 0xb54b, 0x8528, 0x9509, 0xe5ee, 0xf5cf, 0xc5ac, 0xd58d,
    0x3653, 0x2672, 0x1611, 0x0630, 0x76d7, 0x66f6, 0x5695, 0x46b4,
    0xb75b, 0xa77a, 0x9719, 0x8738, 0xf7df, 0xe7fe, 0xd79d, 0xc7bc,
    0x48c4, 0x58e5, 0x6886, 0x78a7, 0x0840, 0x1861, 0x2802, 0x3823,
    0xc9cc, 0xd9ed, 0xe98e, 0xf9af, 0x8948, 0x9969, 0xa90a, 0xb92b,
    0x5af5, 0x4ad4, 0x7ab7, 0x6a96, 0x1a71, 0x0a50, 0x3a33, 0x2a12,
    0xdbfd, 0xcbdc, 0xfbbf, 0xeb9e, 0x9b79, 0x8b58, 0xbb3b, 0xab1a,
    0x6ca6, 0x7c87, 0x4ce4, 0x5cc5, 0x2c22, 0x3c03, 0x0c60, 0x1c41,
    0xedae, 0xfd8f, 0xcdec, 0xddcd, 0xad2a, 0xbd0b, 0x8d68, 0x9d49,
    0x7e97, 0x6eb6, 0x5ed5, 0x4ef4, 0x3e13, 0x2e32, 0x1e51, 0x0e70,
    0xff9f, 0xefbe, 0xdfdd, 0xcffc, 0xbf1b, 0xaf3a, 0x9f59, 0x8f78,
    0x9188, 0x81a9, 0xb1ca, 0xa1eb, 0xd10c, 0xc12d, 0xf14e, 0xe16f,
    0x1080, 0x00a1, 0x30c2, 0x20e3, 0x5004, 0x4025, 0x7046, 0x6067,
    0x83b9, 0x9398, 0xa3fb, 0xb3da, 0xc33d, 0xd31c, 0xe37f, 0xf35e,
    0x02b1, 0x1290, 0x22f3, 0x32d2, 0x4235, 0x5214, 0x6277, 0x7256,
    0xb5ea, 0xa5cb, 0x95a8, 0x8589, 0xf56e, 0xe54f, 0xd52c, 0xc50d,
    0x34e2, 0x24c3, 0x14a0, 0x0481, 0x7466, 0x6447, 0x5424, 0x4405,
    0xa7db, 0xb7fa, 0x8799, 0x97b8, 0xe75f, 0xf77e, 0xc71d, 0xd73c,
    0x26d3, 0x36f2, 0x0691, 0x16b0, 0x6657, 0x7676, 0x4615, 0x5634,
    0xd94c, 0xc96d, 0xf90e, 0xe92f, 0x99c8, 0x89e9, 0xb98a, 0xa9ab,
    0x5844, 0x4865, 0x7806, 0x6827, 0x18c0, 0x08e1, 0x3882, 0x28a3,
    0xcb7d, 0xdb5c, 0xeb3f, 0xfb1e, 0x8bf9, 0x9bd8, 0xabbb, 0xbb9a,
    0x4a75, 0x5a54, 0x6a37, 0x7a16, 0x0af1, 0x1ad0, 0x2ab3, 0x3a92,
    0xfd2e, 0xed0f, 0xdd6c, 0xcd4d, 0xbdaa, 0xad8b, 0x9de8, 0x8dc9,
    0x7c26, 0x6c07, 0x5c64, 0x4c45, 0x3ca2, 0x2c83, 0x1ce0, 0x0cc1,
    0xef1f, 0xff3e, 0xcf5d, 0xdf7c, 0xaf9b, 0xbfba, 0x8fd9, 0x9ff8,
    0x6e17, 0x7e36, 0x4e55, 0x5e74, 0x2e93, 0x3eb2, 0x0ed1, 0x1ef0,
};

uint16_t nori__crc16(const char *buf, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++)
        crc = (uint16_t)((crc << 8) ^ crc16_table[((crc >> 8) ^ (unsigned char)buf[i]) & 0xff]);
    return crc;
}

unsigned nori__cluster_keyslot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open != NULL) {
        size_t after = (size_t)(open + 1 - key);
        const char *close = memchr(open + 1, '}', len - after);
        /* "{}" is no tag: the whole key is hashed (spec: "if the substring
         * between { and } is empty, the whole key is hashed"). */
        if (close != NULL && close > open + 1)
            return nori__crc16(open + 1, (size_t)(close - open - 1)) & (NORI_CLUSTER_SLOTS - 1);
    }
    return nori__crc16(key, len) & (NORI_CLUSTER_SLOTS - 1);
}

void nori__slot_map_free(nori__slot_map *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->nnodes; i++) {
        free(m->nodes[i].host);
        free(m->nodes[i].id);
    }
    free(m->nodes);
    free(m->ranges);
    free(m->owner);
    memset(m, 0, sizeof *m);
}

int nori__slot_map_find(const nori__slot_map *m, const char *host, int port)
{
    for (size_t i = 0; i < m->nnodes; i++)
        if (m->nodes[i].port == port && strcmp(m->nodes[i].host, host) == 0)
            return (int)i;
    return -1;
}

static int bad(const char *from, const char *what, size_t entry)
{
    return nori__fail(NORI_EBACKEND, "redis %s: CLUSTER SLOTS reply entry %zu is invalid: %s",
                      from, entry, what);
}

/*
 * Adds (or finds) the node described by a CLUSTER SLOTS node array
 * [ip, port, id?, metadata?]. *index receives its position in m->nodes.
 */
static int add_node(nori__slot_map *m, const redisReply *n, const char *seed_host,
                    const char *from, size_t entry, bool is_master, int master, int *index)
{
    if (n->type != REDIS_REPLY_ARRAY || n->elements < 2)
        return bad(from, "a node is not an array of at least [ip, port]", entry);
    const redisReply *ip = n->element[0], *port = n->element[1];
    const redisReply *id = n->elements >= 3 ? n->element[2] : NULL;
    if (ip->type != REDIS_REPLY_STRING || port->type != REDIS_REPLY_INTEGER ||
        (id != NULL && id->type != REDIS_REPLY_STRING))
        return bad(from, "a node's ip, port or id has the wrong type", entry);
    if (port->integer < 1 || port->integer > 65535)
        return bad(from, "a node's port is not from 1 to 65535", entry);
    if (ip->len > 255 || memchr(ip->str, '\0', ip->len) != NULL)
        return bad(from, "a node's ip is longer than 255 bytes or holds a NUL", entry);
    if (ip->len == 1 && ip->str[0] == '?')
        return bad(from, "a node's endpoint is unknown ('?')", entry);
    /* An empty endpoint means "the host you asked" (cluster spec, CLUSTER SLOTS). */
    const char *host = ip->len == 0 ? seed_host : ip->str;
    int found = nori__slot_map_find(m, host, (int)port->integer);
    if (found >= 0) {
        nori__cluster_node *f = &m->nodes[found];
        if (f->is_master != is_master || (!is_master && f->master != master))
            return bad(from, "a node appears both as a master and as a replica, or under two "
                             "masters", entry);
        *index = found;
        return 0;
    }
    if (m->nnodes >= NORI_CLUSTER_MAX_NODES)
        return bad(from, "more than 1024 nodes", entry);
    nori__cluster_node *nodes = realloc(m->nodes, (m->nnodes + 1) * sizeof *nodes);
    if (nodes == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory parsing CLUSTER SLOTS from %s", from);
    m->nodes = nodes;
    nori__cluster_node *nn = &nodes[m->nnodes];
    nn->host = strdup(host);
    nn->id = id != NULL ? strndup(id->str, id->len) : strdup("");
    nn->port = (int)port->integer;
    nn->is_master = is_master;
    nn->master = is_master ? -1 : master;
    if (nn->host == NULL || nn->id == NULL) {
        free(nn->host);
        free(nn->id);
        return nori__fail(NORI_ENOMEM, "out of memory parsing CLUSTER SLOTS from %s", from);
    }
    *index = (int)m->nnodes++;
    return 0;
}

static int parse_entry(nori__slot_map *m, const redisReply *e, const char *seed_host,
                       const char *from, size_t entry)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 3)
        return bad(from, "not an array of [start, end, master, replicas...]", entry);
    const redisReply *s = e->element[0], *t = e->element[1];
    if (s->type != REDIS_REPLY_INTEGER || t->type != REDIS_REPLY_INTEGER)
        return bad(from, "the slot range is not two integers", entry);
    if (s->integer < 0 || t->integer >= NORI_CLUSTER_SLOTS || s->integer > t->integer)
        return bad(from, "the slot range is outside 0..16383 or inverted", entry);
    int master;
    int rc = add_node(m, e->element[2], seed_host, from, entry, true, -1, &master);
    if (rc != 0)
        return rc;
    for (size_t i = 3; i < e->elements; i++) {
        int replica;
        rc = add_node(m, e->element[i], seed_host, from, entry, false, master, &replica);
        if (rc != 0)
            return rc;
    }
    for (long long slot = s->integer; slot <= t->integer; slot++) {
        if (m->owner[slot] != NORI_SLOT_UNSERVED)
            return bad(from, "its slot range overlaps an earlier one", entry);
        m->owner[slot] = (uint16_t)master;
    }
    m->served += (size_t)(t->integer - s->integer + 1);
    nori__slot_range *ranges = realloc(m->ranges, (m->nranges + 1) * sizeof *ranges);
    if (ranges == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory parsing CLUSTER SLOTS from %s", from);
    m->ranges = ranges;
    ranges[m->nranges++] = (nori__slot_range){(int)s->integer, (int)t->integer, master};
    return 0;
}

int nori__slot_map_parse(const redisReply *r, const char *seed_host, const char *from,
                         nori__slot_map *out)
{
    nori__slot_map m = {0};
    if (r == NULL)
        return nori__fail(NORI_EBACKEND, "redis %s: no CLUSTER SLOTS reply", from);
    if (r->type == REDIS_REPLY_ERROR)
        return nori__fail(NORI_EBACKEND, "redis %s: CLUSTER SLOTS failed: %.200s", from, r->str);
    if (r->type != REDIS_REPLY_ARRAY)
        return nori__fail(NORI_EBACKEND, "redis %s: CLUSTER SLOTS answered type %d, not an array",
                          from, r->type);
    if (r->elements == 0)
        return nori__fail(NORI_EBACKEND, "redis %s: CLUSTER SLOTS is empty: no slot is served "
                                         "(is the cluster created?)", from);
    m.owner = malloc(NORI_CLUSTER_SLOTS * sizeof *m.owner);
    if (m.owner == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory parsing CLUSTER SLOTS from %s", from);
    for (size_t i = 0; i < NORI_CLUSTER_SLOTS; i++)
        m.owner[i] = NORI_SLOT_UNSERVED;
    for (size_t i = 0; i < r->elements; i++) {
        int rc = parse_entry(&m, r->element[i], seed_host, from, i);
        if (rc != 0) {
            nori__slot_map_free(&m);
            return rc;
        }
    }
    *out = m;
    return NORI_OK;
}

bool nori__info_cluster_enabled(const char *info, size_t len)
{
    static const char field[] = "cluster_enabled:1";
    const size_t flen = sizeof field - 1;
    for (size_t i = 0; i + flen <= len; i++) {
        if ((i == 0 || info[i - 1] == '\n') && memcmp(info + i, field, flen) == 0 &&
            (i + flen == len || info[i + flen] == '\r' || info[i + flen] == '\n'))
            return true;
    }
    return false;
}

/* "MOVED 3999 127.0.0.1:6381", "ASK 3999 [::1]:6381", "MOVED 3999 :6381". */
static bool parse_target(const char *p, const char *end, nori__redirect *out)
{
    char *num_end;
    if (p >= end || *p < '0' || *p > '9')
        return false;
    unsigned long slot = strtoul(p, &num_end, 10);
    if (slot >= NORI_CLUSTER_SLOTS || num_end >= end || *num_end != ' ')
        return false;
    p = num_end + 1;
    /* host:port, the port after the last ':' (an IPv6 host holds ':' too). */
    const char *colon = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == ':')
            colon = q;
    if (colon == NULL)
        return false;
    const char *host = p;
    size_t host_len = (size_t)(colon - p);
    if (host_len >= 2 && host[0] == '[' && host[host_len - 1] == ']') {
        host++;
        host_len -= 2;
    }
    if (host_len >= sizeof out->host)
        return false;
    int port = 0;
    const char *q = colon + 1;
    if (q >= end)
        return false;
    for (; q < end; q++) {
        if (*q < '0' || *q > '9' || port > 65535)
            return false;
        port = port * 10 + (*q - '0');
    }
    if (port < 1 || port > 65535)
        return false;
    for (size_t i = 0; i < host_len; i++)
        if ((unsigned char)host[i] <= ' ')
            return false;
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';
    out->port = port;
    out->slot = (unsigned)slot;
    return true;
}

nori__redirect_kind nori__redirect_parse(const char *err, size_t len, nori__redirect *out)
{
    memset(out, 0, sizeof *out);
    const char *end = err + len;
    /* A reply line ends at the first CR or LF, if any were kept. */
    for (const char *q = err; q < end; q++)
        if (*q == '\r' || *q == '\n') {
            end = q;
            break;
        }
    size_t n = (size_t)(end - err);
    if (n > 6 && memcmp(err, "MOVED ", 6) == 0) {
        if (parse_target(err + 6, end, out))
            out->kind = NORI_REDIRECT_MOVED;
    } else if (n > 4 && memcmp(err, "ASK ", 4) == 0) {
        if (parse_target(err + 4, end, out))
            out->kind = NORI_REDIRECT_ASK;
    } else if (n >= 8 && memcmp(err, "TRYAGAIN", 8) == 0 && (n == 8 || err[8] == ' ')) {
        out->kind = NORI_REDIRECT_TRYAGAIN;
    } else if (n >= 11 && memcmp(err, "CLUSTERDOWN", 11) == 0 && (n == 11 || err[11] == ' ')) {
        out->kind = NORI_REDIRECT_CLUSTERDOWN;
    }
    return out->kind;
}
