// SPDX-License-Identifier: MIT
/*
 * Redis Cluster key hashing and slot map, apart from any I/O so that both
 * can be unit-tested (and fuzzed) on their own.
 *
 * Key slot (cluster specification, "Keys distribution model"): CRC16 of the
 * key (the XMODEM variant: polynomial 0x1021, initial value 0, no
 * reflection) modulo 16384; when the key has a hash tag, only the tag is
 * hashed. The tag is the text between the first '{' and the first '}' after
 * it, provided it is not empty; "{}" or a '{' without a later '}' hash the
 * whole key. The key hashed is the wire key ("cache:" + key): callers pass
 * it whole.
 *
 * Slot map: parsed from a CLUSTER SLOTS reply and validated, because a
 * server that lies (overlapping or inverted ranges, missing fields, wrong
 * types, a port out of range) must give an error, never a crash or a map
 * that routes a slot to garbage.
 */
#ifndef NORI_SRC_REDIS_ROUTE_CLUSTER_SLOTS_H
#define NORI_SRC_REDIS_ROUTE_CLUSTER_SLOTS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NORI_CLUSTER_SLOTS 16384
/* slot_owner value of a slot no master serves. */
#define NORI_SLOT_UNSERVED UINT16_MAX
/* Most nodes a map may name; more is treated as a lying server. */
#define NORI_CLUSTER_MAX_NODES 1024

/* CRC16-XMODEM of buf[0..len). crc16("123456789") == 0x31C3. */
uint16_t nori__crc16(const char *buf, size_t len);

/* The cluster slot (0..16383) of key[0..len), hash tags honoured. */
unsigned nori__cluster_keyslot(const char *key, size_t len);

typedef struct nori__cluster_node {
    char *host;      /* owned; an empty endpoint in the reply is replaced by the seed's host */
    int port;
    char *id;        /* owned; "" when the server gave none */
    bool is_master;  /* first node of a range; a node is never both */
    int master;      /* replicas: index of their master in nodes[]; masters: -1 */
} nori__cluster_node;

typedef struct nori__slot_range {
    int start, end;  /* inclusive, 0 <= start <= end < NORI_CLUSTER_SLOTS */
    int master;      /* index into nodes[] */
} nori__slot_range;

typedef struct nori__slot_map {
    nori__cluster_node *nodes;   /* owned array of nnodes, masters and replicas, unique host:port */
    size_t nnodes;
    nori__slot_range *ranges;    /* owned array of nranges, in reply order */
    size_t nranges;
    uint16_t *owner;             /* owned array of NORI_CLUSTER_SLOTS: node index or NORI_SLOT_UNSERVED */
    size_t served;               /* slots with an owner */
} nori__slot_map;

/*
 * Builds *out from the reply to CLUSTER SLOTS sent to `seed_host` (used for
 * an empty endpoint, as the specification says). `from` names the server in
 * messages (a display URL or host:port; never a password). Returns NORI_OK,
 * NORI_ENOMEM, or NORI_EBACKEND with a message saying what in the reply was
 * wrong. On failure *out holds nothing to free. Release with
 * nori__slot_map_free.
 */
int nori__slot_map_parse(const redisReply *r, const char *seed_host, const char *from,
                         nori__slot_map *out);

void nori__slot_map_free(nori__slot_map *m);

/* Index of host:port in m->nodes, or -1. */
int nori__slot_map_find(const nori__slot_map *m, const char *host, int port);

/* What a cluster error reply asks the client to do. */
typedef enum nori__redirect_kind {
    NORI_REDIRECT_NONE = 0, /* not a cluster redirection: an ordinary reply or error */
    NORI_REDIRECT_MOVED,    /* "MOVED slot host:port": the slot lives there now */
    NORI_REDIRECT_ASK,      /* "ASK slot host:port": ASKING + this one command there */
    NORI_REDIRECT_TRYAGAIN, /* "TRYAGAIN ...": a multi-key command during resharding */
    NORI_REDIRECT_CLUSTERDOWN /* "CLUSTERDOWN ...": the cluster cannot serve now */
} nori__redirect_kind;

typedef struct nori__redirect {
    nori__redirect_kind kind;
    unsigned slot;    /* MOVED, ASK */
    char host[256];   /* MOVED, ASK; an empty host means the node that answered */
    int port;
} nori__redirect;

/*
 * Classifies an error reply text (r->str of a REDIS_REPLY_ERROR). A
 * MOVED/ASK whose slot or address does not parse is NORI_REDIRECT_NONE: the
 * caller reports it as the server error it is, never follows it.
 */
nori__redirect_kind nori__redirect_parse(const char *err, size_t len, nori__redirect *out);

/* True when an INFO reply (the text) says cluster_enabled:1. */
bool nori__info_cluster_enabled(const char *info, size_t len);

#endif
