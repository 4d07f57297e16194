# recipe-lib.sh -- sourced by the flavor scripts; reads a kabuild recipe.yaml.
# Recipes use a tiny YAML subset so no YAML library is needed on the host:
#   key: scalar          (trailing " # comment" allowed, optional quotes)
#   key:                 followed by "  - item" lines (a block list)
# Set RECIPE=/path/to/recipe.yaml before calling.

# recipe_scalar KEY -> prints the value (empty if the key is present with no value);
# exit status 1 if the key is absent
recipe_scalar() {
  awk -v k="$1" '
    /^[[:space:]]*#/ { next }
    $0 ~ "^" k ":" {
      v = substr($0, length(k) + 2)
      sub(/(^|[[:space:]]+)#.*$/, "", v); gsub(/^[[:space:]]+|[[:space:]]+$/, "", v)
      gsub(/^["\047]|["\047]$/, "", v)
      print v; found = 1; exit
    }
    END { if (!found) exit 1 }' "$RECIPE"
}

# recipe_list KEY -> prints one item per line
recipe_list() {
  awk -v k="$1" '
    /^[[:space:]]*#/ { next }
    inlist && /^[[:space:]]+-[[:space:]]/ {
      v = $0; sub(/^[[:space:]]+-[[:space:]]+/, "", v)
      sub(/[[:space:]]+#.*$/, "", v); gsub(/[[:space:]]+$/, "", v)
      print v; next
    }
    inlist && /^[^[:space:]]/ { inlist = 0 }
    $0 ~ "^" k ":[[:space:]]*$" { inlist = 1 }' "$RECIPE"
}
