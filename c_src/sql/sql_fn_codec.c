/* sql_fn_codec.c - hashing (OpenSSL), compression (zlib), base64 and JSON
 * functions (rule-functions §8-10). */
#include <openssl/evp.h>
#include <zlib.h>

#include "../core/json.h"
#include "sql_fn.h"

#define INFLATE_MAX ((size_t)64 << 20) /* decompressed size cap (zip bombs) */

static ec_status digest(sql_eval *ev, const char *fname, const char *alg, const value *v,
                        value *out) {
    const char *s;
    size_t len;
    if (!fn_text(v, &s, &len)) return fn_badarg(ev, fname, "a string", v);
    EVP_MD *md = EVP_MD_fetch(NULL, alg, NULL);
    if (!md) return sql_fn_fail(ev, "%s: hash algorithm %s is not available", fname, alg);
    unsigned char h[EVP_MAX_MD_SIZE];
    unsigned hl = 0;
    int ok = EVP_Digest(s, len, h, &hl, md, NULL);
    EVP_MD_free(md);
    if (!ok) return sql_fn_fail(ev, "%s: hashing failed", fname);
    static const char hx[] = "0123456789abcdef";
    char *o = arena_alloc(ev->a, hl * 2);
    if (!o) return fn_oom(ev);
    for (unsigned i = 0; i < hl; i++) {
        o[2 * i] = hx[h[i] >> 4];
        o[2 * i + 1] = hx[h[i] & 15];
    }
    *out = v_bin(o, hl * 2);
    return EC_OK;
}

FN(md5) {
    (void)n;
    return digest(ev, "md5", "MD5", &a[0], out);
}
FN(sha) {
    (void)n;
    return digest(ev, "sha", "SHA1", &a[0], out);
}
FN(sha256) {
    (void)n;
    return digest(ev, "sha256", "SHA256", &a[0], out);
}

FN(hash) {
    UNUSED_ARGS;
    static const struct {
        const char *name, *alg;
    } algs[] = {{"md4", "MD4"},
                {"md5", "MD5"},
                {"sha", "SHA1"},
                {"sha1", "SHA1"},
                {"sha224", "SHA224"},
                {"sha256", "SHA256"},
                {"sha384", "SHA384"},
                {"sha512", "SHA512"},
                {"sha3_224", "SHA3-224"},
                {"sha3_256", "SHA3-256"},
                {"sha3_384", "SHA3-384"},
                {"sha3_512", "SHA3-512"},
                {"blake2b", "BLAKE2B-512"},
                {"blake2s", "BLAKE2S-256"}};
    for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++)
        if (fn_is(&a[0], algs[i].name)) return digest(ev, "hash", algs[i].alg, &a[1], out);
    return sql_fn_fail(ev, "hash: unknown algorithm");
}

/* windowBits: 31 gzip, -15 raw deflate, 15 zlib */
static ec_status deflate_as(sql_eval *ev, const char *fname, const value *v, int wbits,
                            value *out) {
    const char *s;
    size_t len;
    if (!fn_text(v, &s, &len)) return fn_badarg(ev, fname, "a binary", v);
    z_stream z = {0};
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return fn_oom(ev);
    size_t cap = deflateBound(&z, len) + 32;
    unsigned char *o = arena_alloc(ev->a, cap);
    if (!o) {
        deflateEnd(&z);
        return fn_oom(ev);
    }
    z.next_in = (unsigned char *)s;
    z.avail_in = (uInt)len;
    z.next_out = o;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    size_t outlen = z.total_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END) return sql_fn_fail(ev, "%s: compression failed", fname);
    *out = v_bin((const char *)o, outlen);
    return EC_OK;
}

static ec_status inflate_as(sql_eval *ev, const char *fname, const value *v, int wbits,
                            value *out) {
    const char *s;
    size_t len;
    if (!fn_text(v, &s, &len)) return fn_badarg(ev, fname, "a binary", v);
    z_stream z = {0};
    if (inflateInit2(&z, wbits) != Z_OK) return fn_oom(ev);
    ec_buf b;
    buf_init_arena(&b, ev->a);
    z.next_in = (unsigned char *)s;
    z.avail_in = (uInt)len;
    int rc = Z_OK;
    while (rc != Z_STREAM_END) {
        if (!buf_reserve(&b, 4096) || b.len > INFLATE_MAX) {
            inflateEnd(&z);
            return b.oom ? fn_oom(ev) : sql_fn_fail(ev, "%s: output larger than 64 MiB", fname);
        }
        z.next_out = (unsigned char *)b.p + b.len;
        z.avail_out = (uInt)(b.cap - b.len);
        rc = inflate(&z, Z_NO_FLUSH);
        b.len = (size_t)((char *)z.next_out - b.p);
        if (rc != Z_OK && rc != Z_STREAM_END) {
            inflateEnd(&z);
            return sql_fn_fail(ev, "%s: corrupt input (%s)", fname, z.msg ? z.msg : "data error");
        }
        if (rc == Z_OK && z.avail_in == 0 && z.avail_out != 0) {
            inflateEnd(&z);
            return sql_fn_fail(ev, "%s: truncated input", fname);
        }
    }
    inflateEnd(&z);
    return fn_ret_ab(ev, &b, out);
}

FN(gzip) {
    (void)n;
    return deflate_as(ev, "gzip", &a[0], 31, out);
}
FN(gunzip) {
    (void)n;
    return inflate_as(ev, "gunzip", &a[0], 31, out);
}
FN(zip) {
    (void)n;
    return deflate_as(ev, "zip", &a[0], -15, out);
}
FN(unzip) {
    (void)n;
    return inflate_as(ev, "unzip", &a[0], -15, out);
}
FN(zip_compress) {
    (void)n;
    return deflate_as(ev, "zip_compress", &a[0], 15, out);
}
FN(zip_uncompress) {
    (void)n;
    return inflate_as(ev, "zip_uncompress", &a[0], 15, out);
}

static void b64_opts(const value *a, uint32_t n, bool *nopad, bool *urlsafe) {
    *nopad = *urlsafe = false;
    for (uint32_t i = 1; i < n; i++) { /* other option strings are ignored */
        if (fn_is(&a[i], "no_padding")) *nopad = true;
        if (fn_is(&a[i], "urlsafe")) *urlsafe = true;
    }
}

FN(base64_encode) {
    NEED_TEXT("base64_encode", 0, s, len);
    bool nopad, url;
    b64_opts(a, n, &nopad, &url);
    const char *alpha = url ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                            : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *o = arena_alloc(ev->a, (len + 2) / 3 * 4 + 1);
    if (!o) return fn_oom(ev);
    size_t k = 0;
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        o[k++] = alpha[v >> 18];
        o[k++] = alpha[(v >> 12) & 63];
        o[k++] = alpha[(v >> 6) & 63];
        o[k++] = alpha[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < len ? (uint32_t)p[i + 1] << 8 : 0);
        o[k++] = alpha[v >> 18];
        o[k++] = alpha[(v >> 12) & 63];
        if (i + 1 < len)
            o[k++] = alpha[(v >> 6) & 63];
        else if (!nopad)
            o[k++] = '=';
        if (!nopad) o[k++] = '=';
    }
    *out = v_bin(o, k);
    return EC_OK;
}

FN(base64_decode) {
    NEED_TEXT("base64_decode", 0, s, len);
    bool nopad, url;
    b64_opts(a, n, &nopad, &url);
    if (!nopad && len % 4)
        return sql_fn_fail(ev, "base64_decode: invalid base64 (missing padding)");
    size_t pad = 0;
    while (len && s[len - 1] == '=' && pad < 2)
        len--, pad++;
    if (nopad && pad) return sql_fn_fail(ev, "base64_decode: unexpected padding");
    if (len % 4 == 1) return sql_fn_fail(ev, "base64_decode: invalid base64 length");
    char *o = arena_alloc(ev->a, len * 3 / 4 + 3);
    if (!o) return fn_oom(ev);
    uint32_t acc = 0;
    int bits = 0;
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        int v;
        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= 'a' && c <= 'z')
            v = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            v = c - '0' + 52;
        else if (c == (url ? '-' : '+'))
            v = 62;
        else if (c == (url ? '_' : '/'))
            v = 63;
        else
            return sql_fn_fail(ev, "base64_decode: invalid character");
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[k++] = (char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc) return sql_fn_fail(ev, "base64_decode: invalid trailing bits");
    *out = v_bin(o, k);
    return EC_OK;
}

FN(json_encode) {
    UNUSED_ARGS;
    ec_buf b;
    buf_init(&b);
    bool ok = json_encode(&a[0], &b);
    ec_status st = ok ? fn_ret_buf(ev, &b, out) : fn_oom(ev);
    buf_free(&b);
    return st;
}

FN(json_decode) {
    UNUSED_ARGS;
    NEED_TEXT("json_decode", 0, s, len);
    ec_error e;
    if (json_decode(ev->a, s, len, NULL, out, &e) != EC_OK)
        return sql_fn_fail(ev, "json_decode: %s", e.msg);
    return EC_OK;
}
