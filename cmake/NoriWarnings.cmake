# SPDX-License-Identifier: MIT
# Compile options shared by every target of the project: C11, strict
# warnings (errors unless NORI_WERROR=OFF), and the chosen sanitizers.
add_compile_definitions(_GNU_SOURCE)
add_compile_options(-Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
                    -Wno-unused-parameter)
if(NORI_WERROR)
  add_compile_options(-Werror)
endif()
if(NORI_SANITIZE)
  add_compile_options(-fsanitize=${NORI_SANITIZE} -fno-omit-frame-pointer
                      -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${NORI_SANITIZE})
endif()
