/* per_address.c -- see per_address.h.  Step 8 teaches it (steps/08_epoll/per_address.c); this copy is step 9's. */
#include "per_address.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int per_address_init(struct per_address *counts, int max_clients)
{
    size_t size = 2;
    while (size < 2 * (size_t)max_clients)
        size *= 2;
    counts->entries = calloc(size, sizeof counts->entries[0]);
    counts->mask = size - 1;
    return counts->entries == NULL ? -1 : 0;
}

void per_address_free(struct per_address *counts)
{
    free(counts->entries);
    counts->entries = NULL;
}

struct address_key address_key_of(const struct sockaddr *peer)
{
    struct address_key key = { .bytes = { [10] = 0xff, [11] = 0xff } };
    if (peer->sa_family == AF_INET6)
        memcpy(key.bytes, &((const struct sockaddr_in6 *)(const void *)peer)->sin6_addr, 16);
    else if (peer->sa_family == AF_INET)
        memcpy(key.bytes + 12, &((const struct sockaddr_in *)(const void *)peer)->sin_addr, 4);
    return key;
}

/* FNV-1a: a few lines, and good enough spread for addresses. */
static size_t home_of(const struct per_address *counts, const struct address_key *key)
{
    uint32_t hash = 2166136261u;
    for (size_t i = 0; i < sizeof key->bytes; i++)
        hash = (hash ^ key->bytes[i]) * 16777619u;
    return hash & counts->mask;
}

/* The entry of key, or the empty one where it would go. */
static size_t find(const struct per_address *counts, const struct address_key *key)
{
    size_t i = home_of(counts, key);
    while (counts->entries[i].count != 0
           && memcmp(&counts->entries[i].key, key, sizeof *key) != 0)
        i = (i + 1) & counts->mask;
    return i;
}

int per_address_count(const struct per_address *counts, const struct address_key *key)
{
    return counts->entries[find(counts, key)].count;
}

void per_address_add(struct per_address *counts, const struct address_key *key, int delta)
{
    size_t i = find(counts, key);
    counts->entries[i].key = *key;
    counts->entries[i].count += delta;
    if (counts->entries[i].count > 0)
        return;
    /* Emptied: move back each entry after it that a lookup could no longer
     * reach across the gap (deletion in linear probing: no tombstones). */
    counts->entries[i].count = 0;
    for (size_t j = (i + 1) & counts->mask; counts->entries[j].count != 0;
         j = (j + 1) & counts->mask) {
        size_t home = home_of(counts, &counts->entries[j].key);
        /* j may stay unless its home lies cyclically in (i, j]. */
        bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (!stays) {
            counts->entries[i] = counts->entries[j];
            counts->entries[j].count = 0;
            i = j;
        }
    }
}
