/*
 * per_address.h -- how many connections each client address holds, so
 * that one address cannot take every slot (--max-per-address).
 *
 * A client is its address, not its port: one computer opens as many
 * connections as it likes, each from a new port.  The counts live in a
 * hash table of addresses (open addressing, linear probing), twice as
 * many entries as there can be clients, so a lookup is a step or two
 * however many clients there are.
 *
 *     struct per_address counts;
 *     per_address_init(&counts, max_clients);
 *     struct address_key key = address_key_of((struct sockaddr *)&peer);
 *     if (per_address_count(&counts, &key) >= max_per_address) refuse...
 *     per_address_add(&counts, &key, +1);    ... -1 when it leaves
 */
#ifndef PER_ADDRESS_H
#define PER_ADDRESS_H

#include <stddef.h>
#include <sys/socket.h>

/* An IPv6 address, or an IPv4 one as ::ffff:a.b.c.d, so one key fits both. */
struct address_key {
    unsigned char bytes[16];
};

struct address_count {
    struct address_key key;
    int count;                       /* 0: an empty entry */
};

struct per_address {
    struct address_count *entries;
    size_t mask;                     /* entries - 1: a power of two less one */
};

/* Room for max_clients addresses.  0, or -1 with errno (ENOMEM). */
int per_address_init(struct per_address *counts, int max_clients);
void per_address_free(struct per_address *counts);

/* The key of a peer's address (its port left out). */
struct address_key address_key_of(const struct sockaddr *peer);

/* How many connections the address holds now. */
int per_address_count(const struct per_address *counts, const struct address_key *key);

/* One more (+1) or one fewer (-1) connection from the address. */
void per_address_add(struct per_address *counts, const struct address_key *key, int delta);

#endif
