/* main.c: captions the feature rows of features.h on a Cortex-M7, bare-metal, and prints
 * them through semihosting. The captioner (captioner/captioner.c and .h) comes from
 * `autocaption compile --captioner MODEL --no-encoder --name captioner --out captioner`;
 * features.h from `make-features.sh ROWS.f32 DIM`. */
#include "captioner.h"
#include "features.h"

void semihost_write(const char *s);

int main(void)
{
    static char text[512];
    static char line[600];
    captioner_options options = CAPTIONER_DEFAULT_OPTIONS;
    int failed = 0;
    for (int i = 0; i < FEATURE_ROWS; ++i) {
        int rc = captioner_caption_features(features[i], &options, text, sizeof text, 0, 0);
        /* No printf: a few bytes of formatting by hand keep libc's stdio out of flash. */
        char *p = line;
        int n = i;
        char digits[12];
        int d = 0;
        do {
            digits[d++] = (char)('0' + n % 10);
            n /= 10;
        } while (n);
        while (d) *p++ = digits[--d];
        *p++ = '\t';
        if (rc != CAPTIONER_OK) {
            const char *e = "error ";
            while (*e) *p++ = *e++;
            *p++ = (char)('0' + rc / 10);
            *p++ = (char)('0' + rc % 10);
            failed = 1;
        } else {
            for (const char *t = text; *t; ++t) *p++ = *t;
        }
        *p++ = '\n';
        *p = '\0';
        semihost_write(line);
    }
    return failed;
}
