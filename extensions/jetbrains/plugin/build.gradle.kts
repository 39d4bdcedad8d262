// The IntelliJ glue: run-configuration extensions, the target chooser, the status-bar widget and
// the JSON schema provider. Needs the JetBrains repositories (IntelliJ Platform Gradle Plugin 2.x).
import org.jetbrains.intellij.platform.gradle.TestFrameworkType

plugins {
    kotlin("jvm")
    id("org.jetbrains.intellij.platform")
}

val platformVersion: String by project
val goPlugin: String by project
val pythonPlugin: String by project
version = property("pluginVersion") as String

repositories {
    mavenCentral()
    intellijPlatform { defaultRepositories() }
}

kotlin { jvmToolchain(17) }

dependencies {
    implementation(project(":core"))
    intellijPlatform {
        // IntelliJ IDEA Ultimate has Java, JavaScript/Node.js and JSON bundled; Go and Python come
        // from the marketplace. Each language part of plugin.xml is optional at run time.
        intellijIdeaUltimate(platformVersion)
        // The JSON plugin was split out of the platform in 2024.3 (its id: check when first built).
        bundledPlugins("com.intellij.java", "JavaScript", "NodeJS", "com.intellij.modules.json")
        plugins(goPlugin, pythonPlugin)
        pluginVerifier()
        zipSigner()
        testFramework(TestFrameworkType.Platform)
    }
}

// The schema the JSON schema provider serves: the committed schema/doppel.schema.json.
tasks.processResources {
    from(rootDir.resolve("../../schema/doppel.schema.json")) { into("schema") }
}

intellijPlatform {
    pluginConfiguration {
        version = project.version.toString()
        ideaVersion { sinceBuild = providers.gradleProperty("sinceBuild") }
    }
    pluginVerification { ides { recommended() } }
}

// The helper is not bundled here: users install doppel (PATH or DOPPEL_BIN), as for the CLI.
