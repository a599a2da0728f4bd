#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads a protobuf varint; returns 0 at the end of the buffer or on overflow. */
static int pb_varint(const unsigned char **p, const unsigned char *end, uint64_t *v)
{
    uint64_t x = 0;
    int shift = 0;
    while (*p < end && shift < 64) {
        unsigned char b = *(*p)++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 1;
        }
        shift += 7;
    }
    return 0;
}

/* Stores element i of a typed field into buf as the tensor's type. */
static void put_int(int type, void *buf, size_t i, uint64_t v)
{
    switch (type) {
    case 2: case 9: ((uint8_t *)buf)[i] = (uint8_t)v; break;
    case 3: ((int8_t *)buf)[i] = (int8_t)v; break;
    case 4: ((uint16_t *)buf)[i] = (uint16_t)v; break;
    case 5: ((int16_t *)buf)[i] = (int16_t)v; break;
    case 6: ((int32_t *)buf)[i] = (int32_t)v; break;
    case 12: ((uint32_t *)buf)[i] = (uint32_t)v; break;
    default: ((uint64_t *)buf)[i] = v; break;
    }
}

/* Fills buf with count elements of ONNX type `type` from `path`: a TensorProto (.pb) or
 * raw little-endian bytes. Returns 0 on success, prints the reason otherwise. */
/* Reads a whole file into a malloc'd buffer (NULL, said on stderr, on failure). */
static void *read_all(const char *path, size_t *bytes)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: cannot open\n", path);
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    unsigned char *data = (unsigned char *)malloc(cap);
    for (;;) {
        if (!data) {
            fclose(f);
            fprintf(stderr, "%s: out of memory\n", path);
            return NULL;
        }
        len += fread(data + len, 1, cap - len, f);
        if (len < cap) break;
        cap *= 2;
        unsigned char *grown = (unsigned char *)realloc(data, cap);
        if (!grown) free(data);
        data = grown;
    }
    fclose(f);
    *bytes = len;
    return data;
}

static int read_tensor(const char *path, int type, size_t count, size_t elem, void *buf)
{
    size_t len = 0;
    unsigned char *data = (unsigned char *)read_all(path, &len);
    if (!data) return 1;
    size_t plen = strlen(path);
    if (plen < 3 || strcmp(path + plen - 3, ".pb") != 0) {
        if (len != count * elem) {
            fprintf(stderr, "%s: %lu bytes, expected %lu\n", path, (unsigned long)len, (unsigned long)(count * elem));
            free(data);
            return 1;
        }
        memcpy(buf, data, len);
        free(data);
        return 0;
    }
    const unsigned char *p = data, *end = data + len;
    uint64_t dtype = 0, dims = 1, key, v;
    size_t got = 0;
    int has_dims = 0;
    while (p < end) {
        if (!pb_varint(&p, end, &key)) goto bad;
        int field = (int)(key >> 3), wire = (int)(key & 7);
        if (wire == 0) {
            if (!pb_varint(&p, end, &v)) goto bad;
            if (field == 1) { dims *= v; has_dims = 1; }
            else if (field == 2) dtype = v;
            else if ((field == 5 || field == 7 || field == 11) && got < count) put_int(type, buf, got++, v);
        } else if (wire == 2) {
            uint64_t n;
            if (!pb_varint(&p, end, &n) || n > (uint64_t)(end - p)) goto bad;
            const unsigned char *q = p, *qend = p + n;
            p = qend;
            if (field == 1) {
                while (q < qend) { if (!pb_varint(&q, qend, &v)) goto bad; dims *= v; has_dims = 1; }
            } else if (field == 9) {
                if (n != count * elem) {
                    fprintf(stderr, "%s: raw_data of %lu bytes, expected %lu\n", path, (unsigned long)n, (unsigned long)(count * elem));
                    free(data);
                    return 1;
                }
                memcpy(buf, q, n);
                got = count;
            } else if (field == 4 && type == 1) {
                for (; q + 4 <= qend && got < count; q += 4) memcpy((float *)buf + got++, q, 4);
            } else if (field == 10 && type == 11) {
                for (; q + 8 <= qend && got < count; q += 8) memcpy((double *)buf + got++, q, 8);
            } else if (field == 5 || field == 7 || field == 11) {
                while (q < qend && got < count) { if (!pb_varint(&q, qend, &v)) goto bad; put_int(type, buf, got++, v); }
            }
        } else if (wire == 5) {
            if (end - p < 4) goto bad;
            if (field == 4 && type == 1 && got < count) memcpy((float *)buf + got++, p, 4);
            p += 4;
        } else if (wire == 1) {
            if (end - p < 8) goto bad;
            if (field == 10 && type == 11 && got < count) memcpy((double *)buf + got++, p, 8);
            p += 8;
        } else {
            goto bad;
        }
    }
    free(data);
    if ((int)dtype != type) {
        fprintf(stderr, "%s: tensor of ONNX type %d, expected %d\n", path, (int)dtype, type);
        return 1;
    }
    if ((has_dims ? dims : 1) != count || got != count) {
        fprintf(stderr, "%s: %lu elements, expected %lu\n", path, (unsigned long)got, (unsigned long)count);
        return 1;
    }
    return 0;
bad:
    free(data);
    fprintf(stderr, "%s: not a TensorProto\n", path);
    return 1;
}

/* Prints "output NAME TYPE D0 D1 ...", then one element per line. */
static void print_tensor(const char *name, int type, const long *dims, int rank, const void *buf, size_t count)
{
    printf("output %s %d", name, type);
    for (int i = 0; i < rank; ++i) printf(" %ld", dims[i]);
    printf("\n");
    for (size_t i = 0; i < count; ++i) {
        switch (type) {
        case 1: printf("%.9g\n", (double)((const float *)buf)[i]); break;
        case 11: printf("%.17g\n", ((const double *)buf)[i]); break;
        case 2: case 9: printf("%u\n", (unsigned)((const uint8_t *)buf)[i]); break;
        case 3: printf("%d\n", (int)((const int8_t *)buf)[i]); break;
        case 4: printf("%u\n", (unsigned)((const uint16_t *)buf)[i]); break;
        case 5: printf("%d\n", (int)((const int16_t *)buf)[i]); break;
        case 6: printf("%ld\n", (long)((const int32_t *)buf)[i]); break;
        case 12: printf("%lu\n", (unsigned long)((const uint32_t *)buf)[i]); break;
        case 13: printf("%llu\n", (unsigned long long)((const uint64_t *)buf)[i]); break;
        default: printf("%lld\n", (long long)((const int64_t *)buf)[i]); break;
        }
    }
}
