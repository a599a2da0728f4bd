#!/bin/sh
# features.h from a file of little-endian float32 feature rows of DIM values each:
#   make-features.sh ROWS.f32 DIM > features.h
set -eu
f=${1:?a .f32 file of feature rows}
dim=${2:?the feature width}
rows=$(( $(wc -c < "$f") / (4 * dim) ))
echo "/* features.h: $rows feature rows of $dim from $(basename "$f") (make-features.sh). */"
echo "#define FEATURE_ROWS $rows"
echo "static const float features[$rows][$dim] = {"
# %.9g writes every float32 back exactly.
od -An -v -t f4 -w16 "$f" | awk -v dim="$dim" '
    { for (i = 1; i <= NF; i++) { v[n++] = $i } }
    END {
        for (r = 0; r < n / dim; r++) {
            printf "    {"
            for (c = 0; c < dim; c++) printf "%s%.9g", (c ? ", " : ""), v[r * dim + c]
            printf "},\n"
        }
    }'
echo "};"
