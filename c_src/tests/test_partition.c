/* test_partition.c - partitioners against published vectors: EMQX's
 * key_dispatch (sink-behaviour.md §4.3, from erlang:phash2/1) and Java's
 * murmur2 (computed with org.apache.kafka.common.utils.Utils.murmur2 from the
 * kafka-clients 3.9.1 jar: `java M` over the same keys). */
#include "../kafka/partition.h"
#include "test.h"

TEST(partition_key_dispatch_vectors) {
    static const struct {
        const char *key;
        uint32_t h;
        int p3, p12;
    } v[] = {{"", 13708901, 2, 5},
             {"a", 112802447, 2, 11},
             {"abc", 98228475, 0, 3},
             {"clientid-1", 52626872, 2, 8},
             {"hello world!", 25699699, 1, 7},
             {"0123456789abcdef", 121146389, 2, 5},
             {"device-42", 114043101, 0, 9}};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        size_t n = strlen(v[i].key);
        CHECK_INT(part_phash2(v[i].key, n), v[i].h);
        CHECK_INT(part_pick(PART_KEY_DISPATCH, v[i].key, n, 3), v[i].p3);
        CHECK_INT(part_pick(PART_KEY_DISPATCH, v[i].key, n, 12), v[i].p12);
    }
}

TEST(partition_murmur2_like_java) {
    static const struct {
        const char *key;
        int32_t h;
        int p3, p12;
    } v[] = {{"", 275646681, 0, 9},
             {"a", -1563381124, 1, 4},
             {"abc", 479470107, 0, 3},
             {"21", -973932308, 0, 0},
             {"foobar", -790332482, 0, 6},
             {"clientid-1", -616352580, 2, 8},
             {"device-42", -1415647139, 0, 9},
             {"hello world!", -1076261558, 0, 6},
             {"a-little-bit-long-string", -985981536, 2, 8},
             {"\xc3\xa9t\xc3\xa9-\xe4\xb8\xad", 1927318953, 0, 9}};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        size_t n = strlen(v[i].key);
        CHECK_INT(part_murmur2(v[i].key, n), v[i].h);
        CHECK_INT(part_pick(PART_MURMUR2, v[i].key, n, 3), v[i].p3);
        CHECK_INT(part_pick(PART_MURMUR2, v[i].key, n, 12), v[i].p12);
    }
}

TEST(partition_random_in_range) {
    int seen[5] = {0};
    for (int i = 0; i < 5000; i++) {
        int32_t p = part_pick(PART_RANDOM, "k", 1, 5);
        REQUIRE(p >= 0 && p < 5);
        seen[p]++;
    }
    for (int i = 0; i < 5; i++)
        CHECK(seen[i] > 800); /* roughly uniform */
}
