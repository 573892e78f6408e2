#!/bin/sh
# render TITLE SRC DEST: the site's pages with their title filled in.
set -e
title=$1 src=$2 dest=$3
mkdir -p "$dest"
for page in "$src"/*.html; do
    sed -e "s|@TITLE@|$title|g" "$page" > "$dest/$(basename "$page")"
done
