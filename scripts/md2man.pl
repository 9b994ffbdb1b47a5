#!/usr/bin/perl
# md2man.pl -- turn a man page source written in Markdown into roff.
#
#   md2man.pl [-v VERSION] [-d DATE] SOURCE.md > page.N
#
# SOURCE.md starts with a line "% NAME SECTION".
#
# The man pages are not written twice: docs/man/NAME.N.md holds what only
# a man page has (NAME, SYNOPSIS, FILES, SEE ALSO) and pulls the rest out
# of the Markdown reference in docs/ with
#
#   <!-- include ../configuration.md#Policy file -->
#
# which inserts the section under that heading (up to the next heading of
# the same or a higher level), its own heading left out and its
# subheadings raised so the first level below it becomes .SH.
#
# Only the Markdown docs/ uses is understood: headings, paragraphs, "-"
# and "*" lists, pipe tables, fenced code, `code`, **bold**, *italic*,
# [links](...), HTML comments (dropped).  Anything else is copied as
# text.  A character groff would not know is an error, so that
# `groff -man -ww` stays silent on every page.
use strict;
use warnings FATAL => "all";

my ($version, $date) = ('', '');
while (@ARGV && $ARGV[0] =~ /^-[vd]$/) {
    my $o = shift @ARGV;
    my $v = shift @ARGV;
    die "md2man: $o needs a value\n" unless defined $v;
    if ($o eq '-v') { $version = $v; } else { $date = $v; }
}
die "usage: md2man.pl [-v VERSION] [-d DATE] SOURCE.md\n" unless @ARGV == 1;
my $source = $ARGV[0];

my %glyph = (
    "\x{2265}" => '\(>=', "\x{2264}" => '\(<=', "\x{d7}" => '\(mu',
    "\x{2026}" => '\&...', "\x{2014}" => '\(em', "\x{2013}" => '\(en',
    "\x{2192}" => '\(->', "\x{2212}" => '\-', "\x{b5}" => '\(mc',
    "\x{2018}" => '\(oq', "\x{2019}" => '\(cq', "\x{201c}" => '\(lq',
    "\x{201d}" => '\(rq', "\x{2248}" => '\(~~', "\x{b7}" => '\(pc',
);

sub slurp {
    my ($path) = @_;
    open(my $fh, '<:encoding(UTF-8)', $path)
        or die "md2man: $path: $!\n";
    my @l = <$fh>;
    close($fh);
    chomp(@l);
    return @l;
}

sub dir_of { my ($p) = @_; return $p =~ m{^(.*)/} ? $1 : '.'; }

# The lines of the section under heading $title in $file, headings
# shifted so that the level below $title becomes level 1.
sub section {
    my ($file, $title, $from) = @_;
    my @l = slurp($file);
    my ($level, @out, $fence);
    for my $line (@l) {
        $fence = !$fence if $line =~ /^```/;
        my ($h, $text) = !$fence && $line =~ /^(#+)\s+(.*)$/ ? ($1, $2) : ();
        if (!defined $level) {
            $level = length($h) if defined $h && $text eq $title;
            next;
        }
        last if defined $h && length($h) <= $level;
        if (defined $h) {
            $line = ('#' x (length($h) - $level)) . " $text";
        }
        push @out, $line;
    }
    die "md2man: $from: no heading \"$title\" in $file\n"
        unless defined $level;
    return @out;
}

sub expand {
    my ($file) = @_;
    my @out;
    for my $line (slurp($file)) {
        if ($line =~ /^<!--\s*include\s+(\S+)#(.*?)\s*-->$/) {
            push @out, section(dir_of($file) . "/$1", $2, $file);
        }
        else {
            push @out, $line;
        }
    }
    return @out;
}

sub glyphs {
    my ($t) = @_;
    $t =~ s/([^\x00-\x7f])/exists $glyph{$1} ? $glyph{$1}
        : die sprintf("md2man: %s: no roff glyph for U+%04X\n",
                      $source, ord($1))/ge;
    return $t;
}

# Plain text to roff: backslashes escaped, non-ASCII to glyphs.
sub esc {
    my ($t) = @_;
    $t =~ s/\\/\\e/g;
    return glyphs($t);
}

# Inline Markdown to roff.  Code spans are cut out first, so that a '*'
# in a glob is not taken for emphasis.
sub inline {
    my ($t) = @_;
    my @code;
    $t =~ s/`([^`]+)`/push @code, $1; "\x01" . $#code . "\x02"/ge;
    $t =~ s/\[([^\]]+)\]\((https?:[^)]+)\)/$1 <$2>/g;
    $t =~ s/\[([^\]]+)\]\([^)]*\)/$1/g;
    $t =~ s/\\([|*_`\[\]#])/$1/g;
    $t = esc($t);
    $t =~ s/\*\*(.+?)\*\*/\\fB$1\\fR/gs;
    $t =~ s/(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])/\\fI$1\\fR/g;
    $t =~ s/\x01(\d+)\x02/my $c = esc($code[$1]); $c =~ s{-}{\\-}g;
        "\\fB$c\\fP"/ge;
    return $t;
}

# Output text lines: a line that would start with '.' or "'" is a
# request to roff; \& makes it text.
sub text_lines {
    my ($t) = @_;
    my @w = split /\n/, $t;
    s/^(?=[.'])/\\&/ for @w;
    return join("\n", @w) . "\n";
}

sub cells {
    my ($row) = @_;
    $row =~ s/^\s*\|//;
    $row =~ s/\|\s*$//;
    my (@c, $cur, $code);
    $cur = '';
    for my $ch (split //, $row) {
        $code = !$code if $ch eq '`';
        if ($ch eq '|' && !$code && $cur !~ /\\$/) {
            push @c, $cur;
            $cur = '';
            next;
        }
        $cur .= $ch;
    }
    push @c, $cur;
    s/^\s+|\s+$//g for @c;
    return @c;
}

# Each block function takes the lines and the index of the block's first
# line, prints the roff, and returns the index after the block.

sub code_block {
    my ($l, $i) = @_;
    print ".PP\n.RS 4\n.nf\n";
    for ($i++; $i < @$l && $l->[$i] !~ /^```/; $i++) {
        (my $c = esc($l->[$i])) =~ s/-/\\-/g;
        print text_lines($c);
    }
    print ".fi\n.RE\n";
    return $i + 1;
}

sub heading {
    my ($l, $i) = @_;
    my ($level, $t) = $l->[$i] =~ /^(#+)\s+(.*)$/;
    $t =~ s/`//g;
    if (length($level) == 1) {
        printf ".SH \"%s\"\n", inline(uc($t));
    }
    elsif (length($level) == 2) {
        printf ".SS \"%s\"\n", inline($t);
    }
    else {
        print ".PP\n\\fB", inline($t), "\\fR\n";
    }
    return $i + 1;
}

# A row is a tagged paragraph: the first cell is the tag, the middle
# cells are "header: value" lines, the last cell the text.
sub table {
    my ($l, $i) = @_;
    my @hdr = cells($l->[$i]);
    for ($i += 2; $i < @$l && $l->[$i] =~ /^\|/; $i++) {
        my @c = cells($l->[$i]);
        my @attr;
        print ".TP\n", text_lines(inline($c[0]));
        for my $k (1 .. $#c - 1) {
            push @attr, inline("*$hdr[$k]:* $c[$k]") if $c[$k] ne '';
        }
        print text_lines(join(";\n", @attr)), ".br\n" if @attr;
        print text_lines(inline($c[-1])) if @c > 1;
    }
    return $i;
}

sub list_item {
    my ($l, $i) = @_;
    my ($t) = $l->[$i] =~ /^\s*[-*]\s+(.*)$/;
    for ($i++; $i < @$l && $l->[$i] =~ /^\s+\S/
               && $l->[$i] !~ /^\s*[-*]\s+/; $i++) {
        (my $c = $l->[$i]) =~ s/^\s+//;
        $t .= "\n$c";
    }
    print ".IP \\(bu 2\n", text_lines(inline($t));
    return $i;
}

sub paragraph {
    my ($l, $i) = @_;
    my ($n, $d) = $l->[$i] =~ /^(\S+(?:, \S+)*) - (.*)$/;
    if (defined $n && $i > 1 && $l->[$i - 2] =~ /^# Name$/i) {
        # whatis(1) and lintian read "name \- description" here.
        print ".PP\n", esc($n), " \\- ", inline($d), "\n";
        return $i + 1;
    }
    my $t = $l->[$i];
    for ($i++; $i < @$l && $l->[$i] !~ /^\s*$/
               && $l->[$i] !~ /^(```|#|\||\s*[-*]\s|\s*<!--)/; $i++) {
        $t .= "\n$l->[$i]";
    }
    print ".PP\n", text_lines(inline($t));
    return $i;
}

my @lines = expand($source);
my $head = shift @lines;
die "md2man: $source: the first line must be '% NAME SECTION'\n"
    unless defined $head && $head =~ /^%\s+(\S+)\s+(\d)\b/;
my ($name, $sect) = ($1, $2);
print ".\\\" Generated from $source by scripts/md2man.pl; edit that.\n";
printf ".TH \"%s\" \"%s\" \"%s\" \"mod_ratelimit2 %s\" "
       . "\"mod_ratelimit2 Manual\"\n", uc($name), $sect, $date, $version;

my ($i, $in_comment) = (0, 0);
while ($i < @lines) {
    my $l = $lines[$i];
    if ($in_comment || $l =~ /^\s*<!--/) {
        $in_comment = $l !~ /-->\s*$/;
        $i++;
    }
    elsif ($l =~ /^\s*$/) {
        $i++;
    }
    elsif ($l =~ /^```/) {
        $i = code_block(\@lines, $i);
    }
    elsif ($l =~ /^#+\s/) {
        $i = heading(\@lines, $i);
    }
    elsif ($l =~ /^\|/) {
        $i = table(\@lines, $i);
    }
    elsif ($l =~ /^\s*[-*]\s+/) {
        $i = list_item(\@lines, $i);
    }
    else {
        $i = paragraph(\@lines, $i);
    }
}
