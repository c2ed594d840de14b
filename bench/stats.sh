# Sourced by the bench scripts that report medians (bench/run.sh,
# compare.sh, locality.sh): the median of a list of numbers, an interval
# that says how far to trust it, and the paired per-repetition ratios such
# medians are taken of.

# The median of the numbers on standard input (one per line), with
# `decimals` decimals (3 unless given); "n/a" when there are none.
median_of() { # [decimals]
    sort -g | awk -v d="${1:-3}" '
        { v[NR] = $1 }
        END {
            if (NR == 0) { print "n/a"; exit }
            printf "%.*f\n", d, (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        }'
}

# An interval that holds the true median of what the numbers on standard
# input (one per line, e.g. one ratio per repetition) sample, with at least
# 95% confidence where there are enough of them: "low-high", with
# `decimals` decimals (3 unless given).
#
# It assumes nothing about how the numbers are distributed, only that they
# are independent: each falls below the true median with probability 1/2,
# so the k-th smallest and the k-th largest of n bracket it unless k or
# more fall on one side, with probability 2 P(Bin(n, 1/2) < k). k is the
# largest that keeps that at or under 5%. With 6 numbers or more some k
# does; with 2 to 5 none does, and the interval is the smallest and the
# largest number with its confidence appended (" (93.8%)" for 5); with
# fewer than 2 it is "n/a".
median_interval() { # [decimals]
    sort -g | awk -v d="${1:-3}" '
        { v[NR] = $1 }
        END {
            n = NR
            if (n < 2) { print "n/a"; exit }
            # below: P(Bin(n, 1/2) < k) for the k reached so far.
            p = 0.5 ^ n; below = p; k = 1
            for (i = 1; i < n; i++) {
                p = p * (n - i + 1) / i
                if (2 * (below + p) > 0.05) break
                below += p; k = i + 1
            }
            printf "%.*f-%.*f", d, v[k], d, v[n - k + 1]
            if (2 * below > 0.05) printf " (%.1f%%)", 100 * (1 - 2 * below)
            printf "\n"
        }'
}

# The ratios, one per line in repetition order, of two targets' figures in
# each repetition both ran: standard input is a run's raw.tsv (scenario,
# target, repetition, then the figures; bench/run.sh), `column` the figure
# (4: req/s, 6: CPU per request). A repetition where either figure is
# missing, "n/a", or the denominator is 0 gives none.
paired_ratios() { # scenario numerator denominator column
    awk -F'\t' -v s="$1" -v a="$2" -v b="$3" -v c="$4" '
        $1 == s && ($2 == a || $2 == b) && $3 + 0 > last + 0 { last = $3 + 0 }
        $1 == s && $2 == a && $c != "n/a" { num[$3] = $c }
        $1 == s && $2 == b && $c != "n/a" { den[$3] = $c }
        END {
            for (r = 1; r <= last; r++)
                if ((r in num) && (r in den) && den[r] > 0) print num[r] / den[r]
        }'
}
