#!/bin/bash
# check-public.sh -- the public headers declare only what is used outside
# the core.
#
# common/include/ratelimit2/*.h is what libratelimit2-dev installs: it
# should hold what a front end (mod_ratelimit2/, fcgi/, ctl/) or the
# example program of docs/library.md (the ```c block under
# <!-- library-example -->) calls; the rest belongs in the internal header
# of the core folder that implements it (docs/architecture.md).  Lists
# every function a public header declares that none of them calls, and
# exits 1 when there is any.  The tree is $1 (default: this one).
#
# A declaration is an identifier rl2_... followed by '(' outside comments
# and preprocessor lines, that is not itself a macro parameter list or a
# call inside a macro; a use is the identifier followed by '(' (a call) or
# anywhere else as a word (a function pointer taken) in the front ends'
# code, comments excluded.
set -u
cd "${1:-$(dirname "$0")/..}"

python3 - <<'PY'
import glob, os, re, sys

def strip_comments(text):
    # Comments and string literals out, newlines kept (line numbers).
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith('/*', i):
            j = text.find('*/', i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r'[^\n]', ' ', text[i:j]))
            i = j
        elif text.startswith('//', i):
            j = text.find('\n', i)
            j = n if j < 0 else j
            i = j
        elif c == '"' or c == "'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == '\\' else 1
            out.append(c + ' ' * 0 + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return ''.join(out)

def declarations(path):
    text = strip_comments(open(path).read())
    # Drop preprocessor lines (with their continuations): macros are not
    # functions.
    text = re.sub(r'(?m)^[ \t]*#(?:[^\n]*\\\n)*[^\n]*', '', text)
    found = []
    depth = 0   # parentheses: a name inside a parameter list is no
                # declaration (a function pointer parameter)
    brace = 0   # braces: inside a struct or an inline body
    pos = 0
    for m in re.finditer(r'[(){}]|\brl2_\w+\s*\(', text):
        tok = m.group(0)
        if tok == '(':
            depth += 1
        elif tok == ')':
            depth -= 1
        elif tok == '{':
            brace += 1
        elif tok == '}':
            brace -= 1
        else:
            name = re.match(r'rl2_\w+', tok).group(0)
            if depth == 0 and brace == 0:
                line = text.count('\n', 0, m.start()) + 1
                found.append((name, line))
            depth += 1
    return found

def example_code():
    code, state = [], 0
    for line in open('docs/library.md'):
        line = line.rstrip('\n')
        if state == 0 and line == '<!-- library-example -->':
            state = 1
        elif state == 1 and line == '```c':
            state = 2
        elif state == 2:
            if line == '```':
                break
            code.append(line)
    if not code:
        print('docs/library.md: no ```c block under <!-- library-example -->')
        sys.exit(2)
    return '\n'.join(code)

users = []
for d in ('mod_ratelimit2', 'fcgi', 'ctl'):
    for f in sorted(glob.glob(d + '/**/*.[ch]', recursive=True)):
        users.append(strip_comments(open(f).read()))
users.append(strip_comments(example_code()))
used = set()
for text in users:
    used.update(re.findall(r'\brl2_\w+', text))

unused = []
for h in sorted(glob.glob('common/include/ratelimit2/*.h')):
    for name, line in declarations(h):
        if name not in used:
            unused.append('%s:%d: %s is used by no front end and not by '
                          'the docs/library.md example' % (h, line, name))
for u in unused:
    print(u)
sys.exit(1 if unused else 0)
PY
